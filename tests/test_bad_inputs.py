"""A corpus of bad inputs: every one ends in a clear error of the SDK's own types, quickly.

One row per case: what is given, the error type (or, for a command line, the exit status)
expected, and a phrase its one-line message must hold. Cases go through the public API, the
command-line tools (subprocess, checking there is no traceback) and door_access.py.

The table of outcomes (case, outcome, seconds) for a report:

    GFN_EDGE_CORPUS_TABLE=corpus.md pytest -q tests/test_bad_inputs.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import pytest
from conftest import shared_path
from crafted_images import (
    bmp_header,
    gif_header,
    jpeg_header,
    png,
    png_bomb,
    sun_raster_header,
    tiff_header,
    webp_vp8l,
    webp_vp8x,
)

from gfn_edge import (
    ArtifactError,
    BackendError,
    CheckpointError,
    GalleryError,
    GfnEdgeError,
    ImageError,
    InvalidArgumentError,
    InvalidTypeError,
    ManifestError,
    NonFiniteError,
    ResourceLimitError,
    UnsafeSettingError,
)

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
sys.path.insert(0, str(APPS))

from door import config as door_config  # noqa: E402

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"
IN_PROCESS_LIMIT_S = 5.0
CLI_LIMIT_S = 60.0  # a fresh interpreter importing onnxruntime on a loaded 2-core board
RESULTS: list[tuple[str, str, float]] = []


@dataclass
class Exit:
    """Expected outcome of a command line: this exit status, no traceback."""

    status: int


@dataclass
class Case:
    id: str
    run: Callable[[Ctx], Any]
    expect: Any  # an exception type, or Exit
    says: str


# ----------------------------------------------------------------------------- context


class Ctx:
    """What a case may use: a scratch folder, the real bundles and photos, and the command lines."""

    def __init__(self, tmp: Path, bundles: Any):
        self.tmp = tmp
        self._bundles = bundles
        self._cache: dict[str, Any] = {}

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def _once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def det(self) -> Path:
        return self._once("det", lambda: self._bundles.get(DET, "onnx"))

    @property
    def rec(self) -> Path:
        return self._once("rec", lambda: self._bundles.get(REC, "onnx"))

    @property
    def detector(self):
        from gfn_edge import Detector

        return self._once("detector", lambda: Detector(self.det, threads=1))

    @property
    def embedder(self):
        from gfn_edge import Embedder

        return self._once("embedder", lambda: Embedder(self.rec, threads=1))

    @property
    def photo(self) -> Path:
        return shared_path("faces", "pairs", "deepface_img16.jpg")

    def bundle_copy(self, name: str, edit: Callable[[dict], Any]) -> Path:
        """A copy of the detector bundle whose manifest ``edit`` changed (returns the folder)."""
        import shutil

        folder = self.tmp / name
        if not folder.exists():
            shutil.copytree(self.det, folder)
            manifest = json.loads((folder / "manifest.json").read_text())
            out = edit(manifest)
            (folder / "manifest.json").write_text(out if isinstance(out, str) else json.dumps(manifest))
        return folder

    def cli(self, tool: str, *args: Any) -> subprocess.CompletedProcess:
        if tool == "door":
            argv = [sys.executable, str(APPS / "door_access.py")]
        else:
            modules = {
                "gfn-edge": "gfn_edge.cli",
                "gfn-export": "gfn_edge.export.cli",
                "gfn-calib": "gfn_edge.calib.cli",
                "gfn-eval": "gfn_edge.export.evaluation.cli",
                "gfn-bench": "gfn_edge.benchmark.cli",
            }
            argv = [sys.executable, "-c", f"import sys; from {modules[tool]} import main; sys.exit(main())"]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("GFN_DOOR_CONFIG", None)
        return subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True, timeout=CLI_LIMIT_S * 2, env=env, cwd=self.tmp)


def _torch_save(ctx: Ctx, name: str, obj_factory: Callable[[], Any]) -> Path:
    torch = pytest.importorskip("torch")
    path = ctx.tmp / name
    torch.save(obj_factory(), path)
    return path


class _Trap:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gfn-edge-corpus-PWNED",))


def _checkpoint(ctx: Ctx, path: Path):
    pytest.importorskip("torch")
    from gfn_edge.export.checkpoints import load_state_dict

    return load_state_dict(path)


def _config(ctx: Ctx, text: str):
    return door_config.load_config(ctx.file("door.toml", text))


def _gallery(ctx: Ctx, name: str = "g.db"):
    from gfn_edge import Gallery

    return Gallery(ctx.tmp / name, signature="corpus-model", dim=4)


def _env(name: str, value: str, call: Callable[[], Any]) -> Any:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        return call()
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


# ----------------------------------------------------------------------------- the corpus

U8 = np.zeros((8, 8, 3), np.uint8)
EMB = np.ones(8, np.float32)


def _to_bgr(image, **kw):
    from gfn_edge import to_bgr_uint8

    return lambda ctx: to_bgr_uint8(image, **kw)


def _read(make: Callable[[Ctx], Any], **kw):
    from gfn_edge import read_image

    return lambda ctx: read_image(make(ctx), **kw)


def _crafted(name: str, data: bytes | Callable[[], bytes]):
    return _read(lambda ctx: ctx.file(name, data() if callable(data) else data))


def _checks(fn: str, *args):
    from gfn_edge import checks

    return lambda ctx: getattr(checks, fn)(*args)


def _cos(a, b):
    from gfn_edge.embedder import cosine_similarity

    return lambda ctx: cosine_similarity(a, b)


def _box(box, scale=2.7, size=(100, 80)):
    from gfn_edge.liveness import crop_box

    return lambda ctx: crop_box(size, box, scale)


CASES: list[Case] = [
    # --- pixels handed to the API ---------------------------------------------------------------
    Case("to_bgr: None", _to_bgr(None), ImageError, "image is None"),
    Case("to_bgr: a string", _to_bgr("photo.jpg"), ImageError, "expected a numpy image array, got str"),
    Case("to_bgr: a nested list", _to_bgr([[1, 2], [3, 4]]), ImageError, "expected a numpy image array, got list"),
    Case("to_bgr: 0x0x3", _to_bgr(np.zeros((0, 0, 3), np.uint8)), ImageError, "image is empty"),
    Case("to_bgr: 0x10 grey", _to_bgr(np.zeros((0, 10), np.uint8)), ImageError, "image is empty"),
    Case("to_bgr: 1-D array", _to_bgr(np.zeros(10, np.uint8)), ImageError, "image is empty"),
    Case("to_bgr: 0-D array", _to_bgr(np.array(5, np.uint8)), ImageError, "image is empty"),
    Case("to_bgr: float32 pixels", _to_bgr(np.zeros((8, 8, 3), np.float32)), ImageError, "unsupported pixel type float32"),
    Case("to_bgr: float64 pixels", _to_bgr(np.zeros((8, 8, 3))), ImageError, "unsupported pixel type float64"),
    Case("to_bgr: float16 pixels", _to_bgr(np.zeros((8, 8), np.float16)), ImageError, "unsupported pixel type float16"),
    Case("to_bgr: int32 pixels", _to_bgr(np.zeros((8, 8, 3), np.int32)), ImageError, "unsupported pixel type int32"),
    Case("to_bgr: int8 pixels", _to_bgr(np.zeros((8, 8, 3), np.int8)), ImageError, "unsupported pixel type int8"),
    Case("to_bgr: bool pixels", _to_bgr(np.zeros((8, 8), bool)), ImageError, "unsupported pixel type bool"),
    Case("to_bgr: complex pixels", _to_bgr(np.zeros((8, 8, 3), np.complex64)), ImageError, "unsupported pixel type complex64"),
    Case("to_bgr: object pixels", _to_bgr(np.empty((8, 8, 3), object)), ImageError, "unsupported pixel type object"),
    Case("to_bgr: 2 channels", _to_bgr(np.zeros((8, 8, 2), np.uint8)), ImageError, "expected HxW, HxWx1, HxWx3 or HxWx4"),
    Case("to_bgr: 5 channels", _to_bgr(np.zeros((8, 8, 5), np.uint8)), ImageError, "expected HxW, HxWx1, HxWx3 or HxWx4"),
    Case("to_bgr: 16-bit 5 channels", _to_bgr(np.zeros((8, 8, 5), np.uint16)), ImageError, "expected HxW, HxWx1, HxWx3 or HxWx4"),
    Case("to_bgr: a batch (4-D)", _to_bgr(np.zeros((2, 8, 8, 3), np.uint8)), ImageError, "expected HxW, HxWx1, HxWx3 or HxWx4"),
    Case("to_bgr: color HSV", _to_bgr(U8, color="HSV"), ImageError, "color must be 'BGR' or 'RGB'"),
    Case("to_bgr: color None", _to_bgr(U8, color=None), ImageError, "color must be 'BGR' or 'RGB'"),
    Case("to_bgr: 40000 px wide strip", _to_bgr(np.zeros((1, 40000), np.uint8)), ResourceLimitError, "over 32768 px on a side"),
    Case("to_bgr: over max_pixels", _to_bgr(np.zeros((100, 100), np.uint8), max_pixels=5000), ResourceLimitError, "over the limit of 0.005 megapixels"),
    Case("to_bgr: max_pixels 0", _to_bgr(U8, max_pixels=0), ImageError, "max_pixels must be a whole number >= 1"),
    Case("to_bgr: max_pixels text", _to_bgr(U8, max_pixels="lots"), ImageError, "max_pixels must be a whole number >= 1"),
    Case("to_bgr: max_pixels True", _to_bgr(U8, max_pixels=True), ImageError, "max_pixels must be a whole number >= 1"),
    Case(
        "to_bgr: bad $GFN_EDGE_MAX_IMAGE_PIXELS",
        lambda ctx: _env("GFN_EDGE_MAX_IMAGE_PIXELS", "many", lambda: _to_bgr(U8)(ctx)),
        ImageError,
        "$GFN_EDGE_MAX_IMAGE_PIXELS must be a whole number",
    ),
    # --- picture files ----------------------------------------------------------------------------
    Case("read_image: missing file", _read(lambda ctx: ctx.tmp / "nope.jpg"), ImageError, "does not exist"),
    Case("read_image: a folder", _read(lambda ctx: ctx.tmp), ImageError, "does not exist"),
    Case(
        "read_image: dangling symlink",
        _read(lambda ctx: (ctx.tmp / "link.jpg").symlink_to(ctx.tmp / "gone") or ctx.tmp / "link.jpg"),
        ImageError,
        "does not exist",
    ),
    Case("read_image: path is None", _read(lambda ctx: None), ImageError, "expected a path to a picture"),
    Case("read_image: path is an int", _read(lambda ctx: 123), ImageError, "expected a path to a picture"),
    Case("read_image: empty file", _crafted("empty.jpg", b""), ImageError, "is empty"),
    Case(
        "read_image: random bytes", _crafted("noise.jpg", bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8))), ImageError, "cannot decode"
    ),
    Case("read_image: text file", _crafted("notes.png", "hello, I am not a picture\n" * 20), ImageError, "cannot decode"),
    Case("read_image: JPEG cut after 20 bytes", lambda ctx: _crafted("cut.jpg", ctx.photo.read_bytes()[:20])(ctx), ImageError, "cannot decode"),
    Case("read_image: PNG signature only", _crafted("sig.png", b"\x89PNG\r\n\x1a\n"), ImageError, "cannot decode"),
    Case("read_image: PNG with garbage pixels", _crafted("garbage.png", png(100, 100, b"not zlib at all")), ImageError, "cannot decode"),
    Case("read_image: PNG declaring 0x0", _crafted("zero.png", png(0, 0)), ImageError, "cannot decode"),
    Case("read_image: 1 MB PNG bomb 30000x30000", _crafted("bomb.png", png_bomb), ResourceLimitError, "30000x30000 (900.0 megapixels), over the limit"),
    Case("read_image: PNG header 40000x10", _crafted("wide.png", png(40000, 10)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: PNG header 4294967295 wide", _crafted("huge.png", png(2**32 - 1, 1)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: PNG header 10000x10000", _crafted("big.png", png(10000, 10000)), ResourceLimitError, "over the limit of 50 megapixels"),
    Case("read_image: JPEG header 65535x65535", _crafted("big.jpg", jpeg_header(65535, 65535)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: JPEG header 20000x20000", _crafted("big2.jpg", jpeg_header(20000, 20000)), ResourceLimitError, "400.0 megapixels"),
    Case("read_image: BMP header 100000x100000", _crafted("big.bmp", bmp_header(100000, 100000)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: BMP top-down 30000x-30000", _crafted("down.bmp", bmp_header(30000, -30000)), ResourceLimitError, "900.0 megapixels"),
    Case("read_image: WebP VP8X 16384x16384", _crafted("big.webp", webp_vp8x(16384, 16384)), ResourceLimitError, "268.4 megapixels"),
    Case("read_image: WebP VP8L 16384x16384", _crafted("big2.webp", webp_vp8l(16384, 16384)), ResourceLimitError, "268.4 megapixels"),
    Case("read_image: GIF header 65535x65535", _crafted("big.gif", gif_header(65535, 65535)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: TIFF (II) 50000x50000", _crafted("big.tif", tiff_header(50000, 50000)), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: TIFF (MM) 20000x20000", _crafted("big2.tif", tiff_header(20000, 20000, ">")), ResourceLimitError, "400.0 megapixels"),
    Case("read_image: PGM header 30000x30000", _crafted("big.pgm", b"P5\n30000 30000\n255\n" + bytes(100)), ResourceLimitError, "900.0 megapixels"),
    Case("read_image: PPM text 100000x2", _crafted("wide.ppm", b"P3\n# comment\n100000 2\n255\n0 0 0\n"), ResourceLimitError, "over 32768 px on a side"),
    Case("read_image: real photo over max_pixels=1000", lambda ctx: _read(lambda c: c.photo, max_pixels=1000)(ctx), ResourceLimitError, "over the limit"),
    Case("read_image: Sun raster 40000x40000 (OpenCV's limit)", _crafted("big.ras", sun_raster_header(40000, 40000)), ImageError, "cannot decode"),
    Case(
        "list_images: not a folder",
        lambda ctx: __import__("gfn_edge.image", fromlist=["list_images"]).list_images(ctx.tmp / "nope"),
        ImageError,
        "is not a folder",
    ),
    # --- numbers handed to the API --------------------------------------------------------------
    Case("check_threshold: NaN", _checks("check_threshold", float("nan")), NonFiniteError, "threshold must be a finite number, got nan"),
    Case("check_threshold: +inf", _checks("check_threshold", float("inf")), NonFiniteError, "must be a finite number, got inf"),
    Case("check_threshold: -inf", _checks("check_threshold", float("-inf")), NonFiniteError, "must be a finite number, got -inf"),
    Case("check_threshold: 1.5", _checks("check_threshold", 1.5), InvalidArgumentError, "threshold must be in [-1, 1], got 1.5"),
    Case("check_threshold: -1.01", _checks("check_threshold", -1.01), InvalidArgumentError, "threshold must be in [-1, 1]"),
    Case("check_threshold: text '0.5'", _checks("check_threshold", "0.5"), InvalidTypeError, "threshold must be a number, got '0.5'"),
    Case("check_threshold: None", _checks("check_threshold", None), InvalidTypeError, "threshold must be a number, got None"),
    Case("check_threshold: True", _checks("check_threshold", True), InvalidTypeError, "threshold must be a number, got True"),
    Case("check_threshold: a list", _checks("check_threshold", [0.5]), InvalidTypeError, "must be a number"),
    Case("check_threshold: complex", _checks("check_threshold", 0.5j), InvalidTypeError, "must be a number"),
    Case("check_probability: 1.1", _checks("check_probability", 1.1, "liveness"), InvalidArgumentError, "liveness must be in [0, 1]"),
    Case("check_probability: -0.1", _checks("check_probability", -0.1, "liveness"), InvalidArgumentError, "liveness must be in [0, 1]"),
    Case("clamp_threads: 0", _checks("clamp_threads", 0), InvalidArgumentError, "threads must be at least 1, got 0"),
    Case("clamp_threads: -3", _checks("clamp_threads", -3), InvalidArgumentError, "threads must be at least 1"),
    Case("clamp_threads: 2.5", _checks("clamp_threads", 2.5), InvalidTypeError, "whole number of threads"),
    Case("clamp_threads: '4'", _checks("clamp_threads", "4"), InvalidTypeError, "whole number of threads"),
    Case("clamp_threads: True", _checks("clamp_threads", True), InvalidTypeError, "whole number of threads"),
    Case("clamp_threads: NaN", _checks("clamp_threads", float("nan")), InvalidTypeError, "whole number of threads"),
    Case("cosine: NaN embedding", _cos(EMB, np.full(8, np.nan)), NonFiniteError, "NaN or infinite"),
    Case("cosine: inf embedding", _cos(np.r_[EMB[:7], np.inf], EMB), NonFiniteError, "NaN or infinite"),
    Case("cosine: sizes differ", _cos(EMB, np.ones(4)), InvalidArgumentError, "embeddings differ in size: 8 vs 4"),
    Case("cosine: strings", _cos("abc", "abd"), InvalidTypeError, "must be numbers"),
    Case("liveness box: NaN corner", _box([0, 0, np.nan, 10]), InvalidArgumentError, "NaN or infinite coordinates"),
    Case("liveness box: empty", _box([10, 10, 5, 20]), InvalidArgumentError, "is empty"),
    Case("liveness box: 3 numbers", _box([1, 2, 3]), InvalidArgumentError, "a face box is 4 numbers"),
    Case("liveness box: text", _box("face"), InvalidArgumentError, "a face box is 4 numbers"),
    Case("liveness box: outside the picture", _box([500, 500, 600, 600]), InvalidArgumentError, "lies outside the 100x80 picture"),
    Case("liveness box: scale 0", _box([10, 10, 50, 50], scale=0), InvalidArgumentError, "crop scale must be positive"),
    Case("liveness: no bundles", lambda ctx: __import__("gfn_edge").Liveness([]), InvalidArgumentError, "at least one liveness model"),
    Case("liveness: threshold 0", lambda ctx: __import__("gfn_edge").Liveness(["x"], threshold=0), UnsafeSettingError, "disables the check"),
    Case("liveness: threshold NaN", lambda ctx: __import__("gfn_edge").Liveness(["x"], threshold=float("nan")), NonFiniteError, "finite"),
    Case("liveness: threshold 1.5", lambda ctx: __import__("gfn_edge").Liveness(["x"], threshold=1.5), InvalidArgumentError, "in [0, 1]"),
    Case("liveness: threshold '0.5'", lambda ctx: __import__("gfn_edge").Liveness(["x"], threshold="0.5"), InvalidTypeError, "must be a number"),
    # --- checkpoints (gfn-export's loader) --------------------------------------------------------
    Case("checkpoint: missing", lambda ctx: _checkpoint(ctx, ctx.tmp / "none.pth"), CheckpointError, "does not exist"),
    Case("checkpoint: empty", lambda ctx: _checkpoint(ctx, ctx.file("empty.pth", b"")), CheckpointError, "is empty"),
    Case("checkpoint: random bytes", lambda ctx: _checkpoint(ctx, ctx.file("noise.pth", bytes(range(256)) * 8)), CheckpointError, "cannot read"),
    Case(
        "checkpoint: pickled os.system",
        lambda ctx: _checkpoint(ctx, _torch_save(ctx, "evil.pth", lambda: {"w": _Trap()})),
        CheckpointError,
        "contains pickled Python objects, which gfn-edge never loads (gfn-edge never unpickles",
    ),
    Case(
        "checkpoint: legacy pickle with code",
        lambda ctx: _checkpoint(ctx, ctx.file("legacy.pth", __import__("pickle").dumps({"w": _Trap()}))),
        CheckpointError,
        "never unpickles",
    ),
    Case(
        "checkpoint: a list, not a state_dict",
        lambda ctx: _checkpoint(ctx, _torch_save(ctx, "list.pth", lambda: [1, 2])),
        CheckpointError,
        "does not hold a state_dict",
    ),
    Case("checkpoint: empty dict", lambda ctx: _checkpoint(ctx, _torch_save(ctx, "emptydict.pth", dict)), CheckpointError, "does not hold a state_dict"),
    Case("checkpoint: npz with objects", lambda ctx: _checkpoint(ctx, _npz_objects(ctx)), CheckpointError, "object arrays"),
    Case("checkpoint: npz garbage", lambda ctx: _checkpoint(ctx, ctx.file("bad.npz", b"PK\x03\x04garbage")), CheckpointError, "cannot read"),
    # --- galleries --------------------------------------------------------------------------------
    Case(
        "gallery: a text file",
        lambda ctx: __import__("gfn_edge").Gallery(ctx.file("notes.db", "not sqlite" * 100), signature="m", dim=4),
        GalleryError,
        "notes.db",
    ),
    Case("gallery: missing, create=False", lambda ctx: __import__("gfn_edge").Gallery(ctx.tmp / "missing.db", create=False), GalleryError, "missing.db"),
    Case("gallery: NaN template", lambda ctx: _gallery(ctx, "nan.db").enroll("a", np.full(4, np.nan)), GalleryError, "NaN"),
    Case("gallery: wrong template size", lambda ctx: _gallery(ctx, "dim.db").enroll("a", np.ones(7)), GalleryError, "7"),
    Case("gallery: empty name", lambda ctx: _gallery(ctx, "name.db").enroll("", np.ones(4)), GalleryError, "identity must not be empty"),
    Case("gallery: threshold 1.5", lambda ctx: setattr(_gallery(ctx, "thr.db"), "threshold", 1.5), GalleryError, "[-1, 1]"),
    Case("gallery: calibration FAR 0", lambda ctx: _gallery(ctx, "cal.db").set_calibration(0.7, 0.0, "m"), GalleryError, "target_far"),
    Case("gallery: calibration threshold NaN", lambda ctx: _gallery(ctx, "cal2.db").set_calibration(float("nan"), 0.01, "m"), GalleryError, "finite"),
    Case("gallery: calibration without signature", lambda ctx: _gallery(ctx, "cal3.db").set_calibration(0.7, 0.01, ""), GalleryError, "signature"),
]


def _npz_objects(ctx: Ctx) -> Path:
    path = ctx.tmp / "objects.npz"
    np.savez(path, w=np.zeros(2, np.float32), o=np.array([{"a": 1}], dtype=object))
    return path


def _cfg(toml: str, says: str, expect: Any = door_config.ConfigError) -> Case:
    return Case(f"door.toml: {toml.strip().replace(chr(10), ' ')}", lambda ctx: _config(ctx, toml), expect, says)


UNSAFE = door_config.UnsafeConfigError
CASES += [
    _cfg("[recognition]\nthreshold = -0.5\n", "threshold: -0.5 is out of range; expected > 0.0 and <= 1.0", UNSAFE),
    _cfg("[recognition]\nthreshold = 0\n", "threshold: 0.0 is out of range", UNSAFE),
    _cfg("[recognition]\nthreshold = 1.5\n", "threshold: 1.5 is out of range", UNSAFE),
    _cfg("[recognition]\nthreshold = nan\n", "expected a finite number, got nan"),
    _cfg("[recognition]\nthreshold = inf\n", "expected a finite number, got inf"),
    _cfg("[recognition]\nthreshold = -inf\n", "expected a finite number, got -inf"),
    _cfg('[recognition]\nthreshold = "0.7"\n', "threshold: expected a number, got '0.7'"),
    _cfg("[recognition]\nthreshold = true\n", "threshold: expected a number, got True"),
    _cfg("[recognition]\nthreshold = [0.7]\n", "threshold: expected a number"),
    _cfg("[recognition]\nuncalibrated_threshold = 0\n", "uncalibrated_threshold: 0.0 is out of range", UNSAFE),
    _cfg("[recognition]\nuncalibrated_threshold = nan\n", "expected a finite number"),
    _cfg("[recognition]\nmargin = -0.1\n", "margin: -0.1 is out of range"),
    _cfg("[recognition]\nmargin = 3\n", "margin: 3.0 is out of range"),
    _cfg("[recognition]\nmargin = nan\n", "expected a finite number"),
    _cfg("[recognition]\nconsecutive = 0\n", "consecutive: 0 is out of range"),
    _cfg("[recognition]\nconsecutive = 1.5\n", "consecutive: expected an integer"),
    _cfg('[recognition]\nconsecutive = "3"\n', "consecutive: expected an integer"),
    _cfg("[recognition]\nrecheck_every = 0\n", "recheck_every: 0 is out of range"),
    _cfg("[recognition]\ntreshold = 0.7\n", "unknown key 'treshold'"),
    _cfg("[recogniton]\nthreshold = 0.7\n", "unknown section [recogniton]"),
    _cfg("recognition = 5\n", "recognition must be a table"),
    _cfg("[liveness]\nthreshold = 0\n", "turns the liveness check off silently", UNSAFE),
    _cfg("[liveness]\nthreshold = -0.1\n", "threshold: -0.1 is out of range"),
    _cfg("[liveness]\nthreshold = 1.5\n", "threshold: 1.5 is out of range"),
    _cfg("[liveness]\nthreshold = nan\n", "expected a finite number"),
    _cfg('[liveness]\nenabled = "no"\n', "enabled: expected true or false"),
    _cfg("[liveness]\nenabled = 0\n", "enabled: expected true or false"),
    _cfg("[detection]\nscore_threshold = 0\n", "score_threshold: 0.0 is out of range"),
    _cfg("[detection]\nscore_threshold = 1.5\n", "score_threshold: 1.5 is out of range"),
    _cfg("[detection]\nmax_faces = 0\n", "max_faces: 0 is out of range"),
    _cfg("[detection]\nmin_face_size = -1\n", "min_face_size: -1.0 is out of range"),
    _cfg("[tracking]\niou_threshold = 0\n", "iou_threshold: 0.0 is out of range"),
    _cfg("[tracking]\niou_threshold = 2\n", "iou_threshold: 2.0 is out of range"),
    _cfg("[tracking]\nmax_missed = -1\n", "max_missed: -1 is out of range"),
    _cfg("[tracking]\nmin_hits = 0\n", "min_hits: 0 is out of range"),
    _cfg("[decision]\ncooldown = -1\n", "cooldown: -1.0 is out of range"),
    _cfg("[decision]\ncooldown = inf\n", "expected a finite number, got inf"),
    _cfg("[decision]\ncooldown = nan\n", "expected a finite number, got nan"),
    _cfg('[models]\nbackend = "cuda"\n', "backend: expected one of auto, onnxruntime, tflite, openvino, got 'cuda'"),
    _cfg("[models]\nthreads = 0\n", "threads: 0 is out of range"),
    _cfg("[models]\nthreads = -4\n", "threads: -4 is out of range"),
    _cfg("[models]\nthreads = 2.5\n", "threads: expected an integer"),
    _cfg('[models]\nthreads = "4"\n', "threads: expected an integer"),
    _cfg("[models]\ndetector = 5\n", "detector: expected a path, got 5"),
    _cfg('[models]\ndetector = ""\n', "detector: expected a path"),
    _cfg("[models]\nliveness = [1, 2]\n", "liveness: expected a list of paths"),
    _cfg("[models]\nflip = 1\n", "flip: expected true or false"),
    _cfg("[source]\nuri = true\n", "uri: expected a camera index, a file, a folder or a URL"),
    _cfg("[source]\nfps = 0\n", "fps: 0.0 is out of range"),
    _cfg("[source]\nreconnect_delay = -1\n", "reconnect_delay: -1.0 is out of range"),
    _cfg("[source]\nread_timeout = 0\n", "read_timeout: 0.0 is out of range"),
    _cfg("[source]\nmax_reconnects = -1\n", "max_reconnects: -1 is out of range"),
    _cfg("[source]\nwidth = 0\n", "width: 0 is out of range"),
    _cfg("[snapshots]\nquality = 0\n", "quality: 0 is out of range"),
    _cfg("[snapshots]\nquality = 101\n", "quality: 101 is out of range"),
    _cfg("[snapshots]\nmax_files = 0\n", "max_files: 0 is out of range"),
    _cfg("[events]\nkeep_days = -1\n", "keep_days: -1.0 is out of range"),
    _cfg("[display]\nrecord_fps = 0\n", "record_fps: 0.0 is out of range"),
    _cfg("[quality]\nmax_yaw = -1\n", "max_yaw: -1.0 is out of range"),
    _cfg("[quality]\nmin_blur = nan\n", "expected a finite number"),
    _cfg('[gallery]\npath = ""\n', "path: expected a path"),
    _cfg("actions = 5\n", "actions must be an array of tables"),
    _cfg('[[actions]]\ntype = "shell"\n', "type: expected one of log, command, gpio, mqtt, got 'shell'"),
    _cfg('[[actions]]\ntype = "command"\n', "a command action needs argv"),
    _cfg('[[actions]]\ntype = "command"\nargv = "open-door --now"\n', "give the command as a list"),
    _cfg('[[actions]]\ntype = "command"\nargv = ["x", 5]\n', "argv: expected a list of strings"),
    _cfg('[[actions]]\ntype = "gpio"\n', "a gpio action needs pin"),
    _cfg('[[actions]]\ntype = "gpio"\npin = 17\npulse = 0\n', "pulse: 0.0 is out of range"),
    _cfg('[[actions]]\ntype = "gpio"\npin = 17\npulse = 100\n', "pulse: 100.0 is out of range"),
    _cfg('[[actions]]\ntype = "log"\non = ["open"]\n', "on: expected a list of decisions"),
    _cfg('[[actions]]\ntype = "log"\nwhen = ["grant"]\n', "unknown key 'when'"),
    _cfg("[recognition\nthreshold = 0.7\n", "is not valid TOML"),
    _cfg("threshold = 0.7\n", "unknown section [threshold]"),
    Case("door.toml: missing file", lambda ctx: door_config.load_config(ctx.tmp / "absent.toml"), door_config.ConfigError, "cannot read config"),
    Case("door.toml: a folder", lambda ctx: door_config.load_config(ctx.tmp), door_config.ConfigError, "cannot read config"),
    Case(
        "door.toml: not UTF-8",
        lambda ctx: door_config.load_config(ctx.file("latin.toml", b"[source]\nuri = \"caf\xe9\"\n")),
        door_config.ConfigError,
        "latin.toml",
    ),
]

# --- the models, through the public API (real bundles) -------------------------------------------


def _detector(**kw):
    return lambda ctx: __import__("gfn_edge").Detector(ctx.det, **kw)


def _analyzer(**kw):
    return lambda ctx: __import__("gfn_edge").FaceAnalyzer(ctx.detector, **kw)


def _model_dir(name: str, edit: Callable[[dict], Any]):
    return lambda ctx: __import__("gfn_edge").Detector(ctx.bundle_copy(name, edit))


CASES += [
    Case("Detector: backend 'cuda'", _detector(backend="cuda"), BackendError, "unknown backend 'cuda'"),
    Case("Detector: backend 'tflite' for an ONNX bundle", _detector(backend="tflite"), BackendError, "backend tflite cannot run onnx artifacts"),
    Case("Detector: backend 5", _detector(backend=5), BackendError, "backend must be a name"),
    Case("Detector: score_threshold NaN", _detector(score_threshold=float("nan")), NonFiniteError, "score_threshold must be a finite number"),
    Case("Detector: score_threshold 0", _detector(score_threshold=0.0), InvalidArgumentError, "thresholds must be within 0..1 (score above 0)"),
    Case("Detector: score_threshold 1.5", _detector(score_threshold=1.5), InvalidArgumentError, "got score 1.5"),
    Case("Detector: score_threshold '0.5'", _detector(score_threshold="0.5"), InvalidTypeError, "score_threshold must be a number"),
    Case("Detector: nms_threshold -1", _detector(nms_threshold=-1), InvalidArgumentError, "nms -1.0"),
    Case("Detector: color 'HSV'", _detector(color="HSV"), InvalidArgumentError, "color must be 'BGR' or 'RGB'"),
    Case("Detector: input_size 100x100", _detector(input_size=(100, 100)), InvalidArgumentError, "input_size"),
    Case("Detector: input_size text", _detector(input_size="big"), InvalidArgumentError, "input_size must be (width, height) in whole pixels"),
    Case("Detector: input_size 1.5 wide", _detector(input_size=(1.5, 480)), InvalidArgumentError, "input_size must be (width, height) in whole pixels"),
    Case("Detector: threads 0", _detector(threads=0), InvalidArgumentError, "threads must be at least 1"),
    Case("Detector: threads '2'", _detector(threads="2"), InvalidTypeError, "whole number of threads"),
    Case(
        "Detector: a recogniser bundle", lambda ctx: __import__("gfn_edge").Detector(ctx.rec), ManifestError, "were the detector and recogniser bundles swapped"
    ),
    Case("Detector: missing folder", lambda ctx: __import__("gfn_edge").Detector(ctx.tmp / "no-bundle"), ArtifactError, "does not exist"),
    Case("Detector: an int", lambda ctx: __import__("gfn_edge").Detector(123), InvalidTypeError, "expected a bundle folder path"),
    Case(
        "Detector: empty folder",
        lambda ctx: __import__("gfn_edge").Detector(ctx.tmp / "empty-dir" if (ctx.tmp / "empty-dir").mkdir() is None else None),
        ManifestError,
        "empty-dir",
    ),
    Case("Detector: manifest not JSON", _model_dir("broken-json", lambda m: "{ not json"), ManifestError, "broken-json"),
    Case("Detector: manifest a JSON list", _model_dir("json-list", lambda m: "[1, 2]"), ManifestError, "is not a JSON object"),
    Case(
        "Detector: manifest of another format",
        _model_dir("other-format", lambda m: m.update(format="something-else")),
        ManifestError,
        "has format 'something-else'",
    ),
    Case("Detector: manifest from the future", _model_dir("future", lambda m: m.update(format_version=999)), ManifestError, "newer than this gfn-edge reads"),
    Case("Detector: manifest without files", _model_dir("no-files", lambda m: m.pop("files")), ManifestError, "lacks files"),
    Case(
        "Detector: model file hash changed",
        _model_dir("bad-hash", lambda m: m["sha256"].update(dict.fromkeys(m["sha256"], "0" * 64))),
        GfnEdgeError,
        "bad-hash",
    ),
    Case("detect: None", lambda ctx: ctx.detector.detect(None), ImageError, "image is None"),
    Case("detect: float picture", lambda ctx: ctx.detector.detect(np.zeros((64, 64, 3), np.float32)), ImageError, "unsupported pixel type float32"),
    Case("detect: max_faces -1", lambda ctx: ctx.detector.detect(U8, max_faces=-1), InvalidArgumentError, "max_faces must be a whole number >= 0"),
    Case("detect: max_faces 2.5", lambda ctx: ctx.detector.detect(U8, max_faces=2.5), InvalidArgumentError, "max_faces must be a whole number"),
    Case("detect: min_face_size NaN", lambda ctx: ctx.detector.detect(U8, min_face_size=float("nan")), NonFiniteError, "min_face_size must be a finite"),
    Case("detect: min_face_size -5", lambda ctx: ctx.detector.detect(U8, min_face_size=-5), InvalidArgumentError, "min_face_size must be >= 0"),
    Case(
        "model.run: 1-channel batch",
        lambda ctx: ctx.detector.model.run(np.zeros((1, 32, 32, 1), np.float32)),
        InvalidArgumentError,
        "expected an NHWC batch with 3 channels",
    ),
    Case("Embedder: flip 'yes'", lambda ctx: __import__("gfn_edge").Embedder(ctx.rec, flip="yes"), InvalidTypeError, "flip must be True or False"),
    Case("Embedder: a detector bundle", lambda ctx: __import__("gfn_edge").Embedder(ctx.det), ManifestError, "swapped"),
    Case("Embedder: backend 'gpu'", lambda ctx: __import__("gfn_edge").Embedder(ctx.rec, backend="gpu"), BackendError, "unknown backend 'gpu'"),
    Case("embed: 50x50 crops", lambda ctx: ctx.embedder.embed(np.zeros((2, 50, 50, 3), np.uint8)), ImageError, "align faces first"),
    Case("embed: a string", lambda ctx: ctx.embedder.embed("crop"), ImageError, "expected aligned face crops as a numpy array"),
    Case("embed: float crops", lambda ctx: ctx.embedder.embed(np.zeros((1, 112, 112, 3), np.float32)), ImageError, "unsupported pixel type float32"),
    Case("embed: one crop of 5 channels", lambda ctx: ctx.embedder.embed(np.zeros((112, 112, 5), np.uint8)), ImageError, "expected HxW"),
    Case("FaceAnalyzer: max_faces 0", _analyzer(max_faces=0), InvalidArgumentError, "max_faces must be a whole number >= 1"),
    Case("FaceAnalyzer: max_faces '3'", _analyzer(max_faces="3"), InvalidArgumentError, "max_faces must be a whole number >= 1"),
    Case("FaceAnalyzer: min_face_size -5", _analyzer(min_face_size=-5), InvalidArgumentError, "min_face_size must be >= 0"),
    Case("FaceAnalyzer: min_face_size inf", _analyzer(min_face_size=float("inf")), NonFiniteError, "min_face_size must be a finite"),
    Case("FaceAnalyzer: liveness without score()", _analyzer(liveness=object()), InvalidTypeError, "liveness must have a score(image, box)"),
    Case("FaceAnalyzer: gates as text", _analyzer(gates="strict"), InvalidTypeError, "gates must be a QualityGates"),
    Case("Face.similarity without embeddings", lambda ctx: _no_embedding_similarity(ctx), InvalidArgumentError, "both faces need embeddings"),
    Case(
        "open_model: unknown file type",
        lambda ctx: __import__("gfn_edge").open_model(ctx.file("model.bin", b"\x00" * 100)),
        ArtifactError,
        "unknown model format '.bin'",
    ),
    Case("open_model: nothing there", lambda ctx: __import__("gfn_edge").open_model(ctx.tmp / "nothing"), ArtifactError, "does not exist"),
    Case("open_model: wrong task", lambda ctx: __import__("gfn_edge").open_model(ctx.det, task="embed"), ManifestError, "recogniser bundle is needed"),
    Case(
        "open_model: ONNX without metadata", lambda ctx: __import__("gfn_edge").open_model(ctx.file("lone.onnx", b"\x08\x07" * 100)), GfnEdgeError, "lone.onnx"
    ),
]


def _no_embedding_similarity(ctx: Ctx):
    from gfn_edge import FaceAnalyzer, read_image

    faces = FaceAnalyzer(ctx.detector).analyze(read_image(ctx.photo))
    assert faces, "no face in the test photo"
    return faces[0].similarity(faces[0])


# --- command lines: one error line, an exit status, never a traceback ------------------------------

CASES += [
    Case(
        "gfn-edge: detector folder missing", lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.tmp / "none", ctx.photo), Exit(1), "gfn-edge: error:"
    ),
    Case(
        "gfn-edge: backend 'cuda'",
        lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.det, "--backend", "cuda", ctx.photo),
        Exit(1),
        "unknown backend 'cuda'",
    ),
    Case(
        "gfn-edge: --threads 0",
        lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.det, "--threads", "0", ctx.photo),
        Exit(2),
        "expected a positive integer",
    ),
    Case(
        "gfn-edge: --score-threshold 0",
        lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.det, "--score-threshold", "0", ctx.photo),
        Exit(1),
        "--score-threshold must be in (0, 1]",
    ),
    Case(
        "gfn-edge: --min-face-size nan",
        lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.det, "--min-face-size", "nan", ctx.photo),
        Exit(1),
        "--min-face-size must be a finite number",
    ),
    Case(
        "gfn-edge: compare --threshold nan",
        lambda ctx: ctx.cli("gfn-edge", "compare", "--detector", ctx.det, "--recognizer", ctx.rec, "--threshold", "nan", ctx.photo, ctx.photo),
        Exit(1),
        "--threshold must be a finite number",
    ),
    Case(
        "gfn-edge: compare --threshold 1.5",
        lambda ctx: ctx.cli("gfn-edge", "compare", "--detector", ctx.det, "--recognizer", ctx.rec, "--threshold", "1.5", ctx.photo, ctx.photo),
        Exit(1),
        "--threshold must be in [-1, 1]",
    ),
    Case("gfn-edge: bundles swapped", lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.rec, ctx.photo), Exit(1), "swapped"),
    Case(
        "gfn-edge: analyze a PNG bomb",
        lambda ctx: ctx.cli("gfn-edge", "analyze", "--detector", ctx.det, ctx.file("cli-bomb.png", png_bomb())),
        Exit(1),
        "over the limit of 50 megapixels",
    ),
    Case(
        "gfn-edge: compare a picture without a face",
        lambda ctx: ctx.cli(
            "gfn-edge",
            "compare",
            "--detector",
            ctx.det,
            "--recognizer",
            ctx.rec,
            ctx.file("grey.png", cv2.imencode(".png", np.full((64, 64), 128, np.uint8))[1].tobytes()),
            ctx.photo,
        ),
        Exit(1),
        "no face found in",
    ),
    Case(
        "gfn-export: unknown model",
        lambda ctx: ctx.cli("gfn-export", "--model", "no-such-model", "--target", "onnx", "--out", ctx.tmp / "x"),
        Exit(2),
        "gfn-export: error:",
    ),
    Case(
        "gfn-export: checkpoint with pickled code",
        lambda ctx: ctx.cli("gfn-export", "--model", _torch_save(ctx, "cli-evil.pth", lambda: {"w": _Trap()}), "--target", "onnx", "--out", ctx.tmp / "x"),
        Exit(2),
        "never unpickles",
    ),
    Case("gfn-calib: set missing", lambda ctx: ctx.cli("gfn-calib", "inspect", ctx.tmp / "none.npz"), Exit(2), "gfn-calib: error:"),
    Case(
        "gfn-eval: verify data missing",
        lambda ctx: ctx.cli("gfn-eval", "verify", ctx.tmp / "none.bin", "--bundle", ctx.rec, "--out", ctx.tmp / "ev"),
        Exit(2),
        "gfn-eval: error:",
    ),
    Case(
        "gfn-bench: bundles folder missing",
        lambda ctx: ctx.cli("gfn-bench", "--bundles", ctx.tmp / "none", "--no-peers", "--out", ctx.tmp / "b"),
        Exit(1),
        "gfn-bench: error:",
    ),
    Case("door: config file missing", lambda ctx: ctx.cli("door", "run", "--config", ctx.tmp / "none.toml"), Exit(1), "cannot read config"),
    Case(
        "door: threshold -0.5 in the config",
        lambda ctx: ctx.cli("door", "run", "--config", ctx.file("neg.toml", "[recognition]\nthreshold = -0.5\n")),
        Exit(1),
        "threshold: -0.5 is out of range",
    ),
    Case(
        "door: --liveness-threshold 0",
        lambda ctx: ctx.cli("door", "run", "--config", ctx.file("e.toml", ""), "--liveness-threshold", "0"),
        Exit(1),
        "turns the liveness check off silently",
    ),
    Case(
        "door: --threshold nan",
        lambda ctx: ctx.cli("door", "run", "--config", ctx.file("e.toml", ""), "--threshold", "nan"),
        Exit(1),
        "--threshold: expected a finite number, got nan",
    ),
    Case(
        "door: no threshold calibrated",
        lambda ctx: ctx.cli("door", "run", "--config", ctx.file("m.toml", _models_toml(ctx, "uncal")), "--source", ctx.photo.parent, "--no-liveness"),
        Exit(1),
        "no match threshold calibrated on recogniser",
    ),
    Case(
        "door: --uncalibrated-threshold -1",
        lambda ctx: ctx.cli("door", "run", "--config", ctx.file("e.toml", ""), "--uncalibrated-threshold", "-1"),
        Exit(1),
        "--uncalibrated-threshold: -1.0 is out of range",
    ),
    Case(
        "door: events --since garbage",
        lambda ctx: ctx.cli("door", "events", "--config", ctx.file("e.toml", ""), "--db", ctx.tmp / "ev.db", "--since", "last tuesday"),
        Exit(1),
        "door_access.py: error:",
    ),
    Case(
        "door: list, gallery missing",
        lambda ctx: ctx.cli("door", "list", "--config", ctx.file("e.toml", ""), "--gallery", ctx.tmp / "none.db"),
        Exit(1),
        "does not exist",
    ),
    Case(
        "door: enroll without photos or camera",
        lambda ctx: ctx.cli("door", "enroll", "--config", ctx.file("e.toml", ""), "--name", "x"),
        Exit(1),
        "give photos to enrol from, or --camera SOURCE",
    ),
    Case(
        "door: enroll --timeout inf",
        lambda ctx: ctx.cli("door", "enroll", "--config", ctx.file("e.toml", ""), "--name", "x", "--camera", "0", "--timeout", "inf"),
        Exit(2),
        "expected a finite number of seconds >= 0",
    ),
    Case(
        "door: enroll --interval -1",
        lambda ctx: ctx.cli("door", "enroll", "--config", ctx.file("e.toml", ""), "--name", "x", "--camera", "0", "--interval", "-1"),
        Exit(2),
        "expected a finite number of seconds >= 0",
    ),
    Case(
        "door: calibrate --target-far 2",
        lambda ctx: ctx.cli("door", "calibrate", "--config", ctx.file("e.toml", ""), "--pairs", ctx.tmp / "p.csv", "--target-far", "2"),
        Exit(1),
        "--target-far must be a rate between 0 and 1",
    ),
    Case(
        "door: calibrate, pairs file missing",
        lambda ctx: ctx.cli("door", "calibrate", "--config", ctx.file("e.toml", ""), "--pairs", ctx.tmp / "p.csv"),
        Exit(1),
        "p.csv does not exist",
    ),
    Case(
        "door: run on a missing video",
        lambda ctx: ctx.cli(
            "door",
            "run",
            "--config",
            ctx.file("m2.toml", _models_toml(ctx, "vid")),
            "--source",
            ctx.tmp / "none.avi",
            "--no-liveness",
            "--uncalibrated-threshold",
            "0.9",
        ),
        Exit(1),
        "none.avi",
    ),
]


def _models_toml(ctx: Ctx, name: str) -> str:
    folder = ctx.tmp / name
    folder.mkdir(exist_ok=True)
    return (
        f'[models]\ndetector = "{ctx.det}"\nrecognizer = "{ctx.rec}"\nthreads = 1\n'
        f'[gallery]\npath = "{folder / "gallery.db"}"\n[events]\ndb = "{folder / "events.db"}"\n'
    )


# ----------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, bundles) -> Ctx:
    yield Ctx(tmp_path_factory.mktemp("corpus"), bundles)
    table = os.environ.get("GFN_EDGE_CORPUS_TABLE")
    if table and RESULTS:
        lines = ["| # | case | outcome | s |", "|---|---|---|---|"]
        lines += [f"| {i} | {case} | {outcome.replace('|', '/')} | {seconds:.2f} |" for i, (case, outcome, seconds) in enumerate(RESULTS, 1)]
        Path(table).write_text("\n".join(lines) + "\n")


def test_corpus_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 150 and len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_a_clear_error(case: Case, ctx: Ctx):
    t0 = time.perf_counter()
    if isinstance(case.expect, Exit):
        proc = case.run(ctx)
        seconds = time.perf_counter() - t0
        errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
        outcome = f"exit {proc.returncode}: {errors[-1] if errors else proc.stderr.strip().splitlines()[-1:]}"
        RESULTS.append((case.id, outcome, seconds))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == case.expect.status, proc.stderr
        assert errors and case.says in proc.stderr, proc.stderr
        assert seconds < CLI_LIMIT_S
        return
    with pytest.raises(Exception) as info:
        case.run(ctx)
    seconds = time.perf_counter() - t0
    error = info.value
    message = str(error)
    RESULTS.append((case.id, f"{type(error).__name__}: {message}", seconds))
    assert isinstance(error, GfnEdgeError), f"{type(error).__name__} is not a GfnEdgeError: {message}"
    assert isinstance(error, case.expect), f"expected {case.expect.__name__}, got {type(error).__name__}: {message}"
    assert case.says in message, message
    assert "\n" not in message.strip(), f"not one line: {message!r}"
    assert seconds < IN_PROCESS_LIMIT_S or case.id.startswith(("Detector", "Embedder", "checkpoint", "open_model", "Face"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", *sys.argv[1:]]))

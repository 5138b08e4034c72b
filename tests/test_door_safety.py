"""A door that fails closed: no setting opens it for a stranger, no input hangs it or escapes as a traceback.

Config-level checks need no model and run in a second; the rest use the real exported bundles
and the shared photos, through the app as a user runs it (subprocess) where the behaviour is
the app's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_path
from crafted_images import png_bomb, sun_raster_header

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
DOOR = APPS / "door_access.py"
sys.path.insert(0, str(APPS))

from gfn_edge import InvalidArgumentError, NonFiniteError, UnsafeSettingError  # noqa: E402

from door import config as door_config  # noqa: E402

DET = "retinaface-mnet025"
REC = "ghostfacenet-dsitweed-w0.5-e16"


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A ~0.9 MB grey PNG that decodes to ``width`` x ``height`` pixels."""
    path.write_bytes(png_bomb(width, height, 1000 if height % 1000 == 0 else height))
    return path


def config(text: str, tmp_path: Path) -> door_config.Config:
    path = tmp_path / "door.toml"
    path.write_text(text)
    return door_config.load_config(path)


def door(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("GFN_DOOR_CONFIG", None)
    proc = subprocess.run([sys.executable, str(DOOR), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    print(f"\n$ door_access.py {' '.join(map(str, args))}   # rc {proc.returncode}\n{proc.stdout}{proc.stderr}", end="")
    return proc


# ============================================================================= settings (no model)


@pytest.mark.parametrize(
    "text, says",
    [
        ("[recognition]\nthreshold = -0.5\n", "threshold: -0.5 is out of range; expected > 0.0 and <= 1.0"),
        ("[recognition]\nthreshold = 0\n", "threshold: 0.0 is out of range"),
        ("[recognition]\nthreshold = nan\n", "threshold: expected a finite number, got nan"),
        ("[recognition]\nthreshold = inf\n", "threshold: expected a finite number, got inf"),
        ("[recognition]\nuncalibrated_threshold = -1.0\n", "uncalibrated_threshold: -1.0 is out of range"),
        ("[liveness]\nthreshold = 0\n", "turns the liveness check off silently"),
        ("[liveness]\nthreshold = 0.0\nenabled = true\n", "[liveness] enabled = false or --no-liveness"),
        ("[detection]\nscore_threshold = 0\n", "score_threshold: 0.0 is out of range"),
    ],
)
def test_unsafe_settings_in_the_toml_are_refused(tmp_path: Path, text: str, says: str):
    with pytest.raises(door_config.ConfigError) as info:
        config(text, tmp_path)
    assert says in str(info.value) and str(tmp_path / "door.toml") in str(info.value)
    assert isinstance(info.value, UnsafeSettingError) or "score_threshold" in says or "finite" in says


def test_liveness_threshold_zero_is_accepted_only_with_liveness_explicitly_off(tmp_path: Path):
    cfg = config("[liveness]\nenabled = false\nthreshold = 0\n", tmp_path)
    assert cfg.liveness.enabled is False and cfg.liveness.threshold == 0.0
    import door_access

    def configure(*flags):
        return door_access.configure(door_access.build_parser().parse_args(["run", "--config", str(tmp_path / "none.toml"), *flags]))

    (tmp_path / "none.toml").write_text("")
    with pytest.raises(door_config.UnsafeConfigError, match="turns the liveness check off silently"):
        configure("--liveness-threshold", "0")
    assert configure("--liveness-threshold", "0", "--no-liveness").liveness.enabled is False
    with pytest.raises(door_config.UnsafeConfigError, match="--threshold: -0.5 is out of range"):
        configure("--threshold", "-0.5")
    with pytest.raises(door_config.ConfigError, match="--uncalibrated-threshold: expected a finite number, got nan"):
        configure("--uncalibrated-threshold", "nan")


def test_threads_beyond_the_usable_cores_are_clamped_with_a_warning(tmp_path: Path, caplog):
    cores = len(os.sched_getaffinity(0))
    with caplog.at_level(logging.WARNING):
        cfg = config("[models]\nthreads = 1000\n", tmp_path)
    assert cfg.models.threads == cores
    assert f"threads=1000 is more than the {cores} usable CPU core(s); using {cores}" in caplog.text
    with pytest.raises(door_config.ConfigError, match="threads: 0 is out of range"):
        config("[models]\nthreads = 0\n", tmp_path)


def test_gallery_keeps_the_calibration_with_its_far_and_recogniser(tmp_path: Path):
    from gfn_edge import Gallery, GalleryError

    with Gallery(tmp_path / "g.db", signature="model-a", dim=4) as gallery:
        assert gallery.calibration is None
        gallery.set_calibration(0.7471, 0.01, "model-a")
        assert gallery.calibration == {"threshold": 0.7471, "target_far": 0.01, "signature": "model-a"}
        assert gallery.threshold == 0.7471
        for bad in ((float("nan"), 0.01, "model-a"), (0.7, 1.0, "model-a"), (0.7, 0.01, "")):
            with pytest.raises(GalleryError):
                gallery.set_calibration(*bad)
        assert gallery.calibration["threshold"] == 0.7471  # a refused write changes nothing
        gallery.threshold = 0.3  # set by hand: no longer what was calibrated
        assert gallery.calibration is None and gallery.threshold == 0.3


def test_pickled_code_is_refused_without_relaying_torchs_advice(tmp_path: Path):
    torch = pytest.importorskip("torch")
    from gfn_edge.errors import CheckpointError
    from gfn_edge.export.checkpoints import load_state_dict

    marker = tmp_path / "code-ran"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(2), "payload": Trap()}, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "contains pickled Python objects" in message and "gfn-edge never unpickles" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message and "likely succeed" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's text is not chained in either
    assert not marker.exists()
    proc = subprocess.run(
        [sys.executable, "-m", "gfn_edge.export.cli", "--model", str(path), "--target", "onnx", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and "weights_only" not in proc.stderr.replace("weights_only=True", "") and "Traceback" not in proc.stderr


# ============================================================================= resource bounds


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path):
    import resource

    from gfn_edge import ImageError, ResourceLimitError, read_image

    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1_500_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ImageError) as info:
        read_image(bomb)
    assert time.perf_counter() - t0 < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing near 900 MB was allocated
    assert isinstance(info.value, ResourceLimitError)
    assert "30000x30000 (900.0 megapixels), over the limit of 50 megapixels" in str(info.value)
    assert read_image(bomb_png(tmp_path / "small.png", 64, 48)).shape == (48, 64, 3)
    with pytest.raises(ImageError, match="over the limit of 0.002 megapixels"):
        read_image(tmp_path / "small.png", max_pixels=2000)


def test_header_past_opencvs_own_limit_is_an_image_error_not_cv2_error(tmp_path: Path):
    """Sun raster is not parsed here: OpenCV's own size check raises cv2.error, which must not escape."""
    from gfn_edge import ImageError, read_image

    path = tmp_path / "huge.ras"
    path.write_bytes(sun_raster_header(40000, 40000))
    with pytest.raises(ImageError, match="cannot decode .*huge.ras"):
        read_image(path)


def test_threads_1000_answers_as_fast_as_threads_2(bundles):
    from gfn_edge import Detector, read_image

    det = bundles.get(DET, "onnx")
    photo = read_image(shared_path("faces", "scenes", "insightface_t1.jpg"))
    timings = {}
    for threads in (2, 1000):
        t0 = time.perf_counter()
        detector = Detector(det, threads=threads)
        found = detector.detect(photo)
        timings[threads] = time.perf_counter() - t0
        assert len(found) > 0
        assert detector.model.threads <= len(os.sched_getaffinity(0))
    assert timings[1000] < max(3 * timings[2], timings[2] + 2.0), timings


def test_gfn_edge_threads_1000_is_clamped_with_a_warning(bundles):
    photo = shared_path("faces", "pairs", "deepface_img16.jpg")
    cmd = [
        sys.executable,
        "-c",
        "import sys; from gfn_edge.cli import main; sys.exit(main())",
        "analyze",
        "--detector",
        str(bundles.get(DET, "onnx")),
        "--threads",
        "1000",
        "--no-embedding",
        str(photo),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t0 < 60
    cores = len(os.sched_getaffinity(0))
    assert f"--threads=1000 is more than the {cores} usable CPU core(s); using {cores}" in proc.stderr
    assert '"faces": [{' in proc.stdout


def test_embedding_thousands_of_crops_is_chunked_and_equal_to_one_by_one(bundles):
    from gfn_edge import Embedder
    from gfn_edge.embedder import EMBED_CHUNK

    emb = Embedder(bundles.get(REC, "onnx"))
    w, h = emb.crop_size
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3 * EMBED_CHUNK + 5, h, w, 3), dtype=np.uint8)
    batch = emb.embed(crops)
    singles = np.concatenate([emb.embed(crops[i : i + 1]) for i in range(0, len(crops), 17)])
    assert batch.shape == (len(crops), emb.dim)
    np.testing.assert_allclose(batch[::17], singles, atol=1e-4)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_non_finite_embeddings_never_reach_a_comparison():
    from gfn_edge.embedder import cosine_similarity

    good = np.ones(8, np.float32)
    for bad in (np.full(8, np.nan, np.float32), np.r_[np.ones(7), np.inf].astype(np.float32)):
        with pytest.raises(NonFiniteError, match="NaN or infinite"):
            cosine_similarity(good, bad)
    with pytest.raises(InvalidArgumentError, match="differ in size"):
        cosine_similarity(good, np.ones(4))


def test_liveness_threshold_below_chance_is_refused(bundles):
    """Below 1/classes a face the models rate as more likely a spoof than real would pass: liveness off in effect."""
    from gfn_edge import Liveness

    v2 = bundles.get("minifasnet-v2-2.7", "onnx")
    with pytest.raises(UnsafeSettingError, match=r"below chance level \(0.333 for 3 classes\)"):
        Liveness([v2], threshold=0.2)
    assert Liveness([v2], threshold=0.34).threshold == 0.34


def test_a_recogniser_returning_nan_is_stopped_before_any_match(bundles, tmp_path: Path):
    """A damaged manifest (std ~0: every input becomes inf) must not yield vectors a gallery would compare."""
    import json
    import shutil

    from gfn_edge import Embedder, GfnEdgeError, ManifestError

    bundle = tmp_path / "rec"
    shutil.copytree(bundles.get(REC, "onnx"), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["spec"]["preprocess"]["std"] = [1e-45, 1e-45, 1e-45]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    crop = np.full((112, 112, 3), 128, np.uint8)
    with pytest.raises(GfnEdgeError) as info:
        Embedder(bundle).embed(crop)
    assert isinstance(info.value, (NonFiniteError, ManifestError)), info.value  # refused on load (schema) or at the output


# ============================================================================= the door, end to end


@pytest.fixture(scope="module")
def models(bundles) -> dict:
    return {"detector": str(bundles.get(DET, "onnx")), "recognizer": str(bundles.get(REC, "onnx"))}


def _config(models: dict, tmp: Path, extra: str = "") -> Path:
    path = tmp / "door.toml"
    path.write_text(
        f'[models]\ndetector = "{models["detector"]}"\nrecognizer = "{models["recognizer"]}"\nthreads = 2\n'
        f'[gallery]\npath = "{tmp / "gallery.db"}"\n[events]\ndb = "{tmp / "events.db"}"\n'
        f"[tracking]\nmax_missed = 3\nmin_hits = 2\n" + extra
    )
    return path


@pytest.mark.slow
def test_door_refuses_to_start_on_an_uncalibrated_threshold_then_runs_once_calibrated(models, tmp_path: Path):
    """The bundle's 0.30 never decides; calibrate --save stores threshold, FAR and recogniser; a looser config is refused."""
    pairs = shared_path("faces", "pairs")
    frames = tmp_path / "frames"
    frames.mkdir()
    photo = cv2.imread(str(pairs / "deepface_img16.jpg"))
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.jpg"), photo)
    bomb_png(frames / "1b_bomb.png")  # between good frames: skipped with a warning, the run goes on
    cfg = _config(models, tmp_path, "[liveness]\nenabled = false\n")

    proc = door("run", "--config", cfg, "--source", frames)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no match threshold calibrated on recogniser" in proc.stderr and "calibrate --pairs PAIRS.csv --save" in proc.stderr
    assert "--uncalibrated-threshold X" in proc.stderr

    proc = door("run", "--config", cfg, "--source", frames, "--uncalibrated-threshold", "0.9")
    assert proc.returncode == 0, proc.stderr
    assert "UNCALIBRATED THRESHOLD: matching at 0.9000" in proc.stderr
    assert "1b_bomb.png" in proc.stderr and "over the limit of 50 megapixels" in proc.stderr

    csv_path = tmp_path / "pairs.csv"
    rows = (pairs / "pairs.csv").read_text().splitlines()
    csv_path.write_text("\n".join([rows[0]] + [",".join([str(pairs / c) if c.endswith(".jpg") else c for c in r.split(",")]) for r in rows[1:]]) + "\n")
    proc = door("calibrate", "--config", cfg, "--pairs", csv_path, "--target-far", "0.01", "--save", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "saved threshold" in proc.stderr and "target FAR 0.01" in proc.stderr

    from gfn_edge import Embedder, Gallery

    with Gallery(tmp_path / "gallery.db", create=False) as gallery:
        stored = gallery.calibration
    assert stored["target_far"] == 0.01 and stored["signature"] == Embedder(models["recognizer"]).signature
    assert 0.3 < stored["threshold"] < 1.0

    proc = door("run", "--config", cfg, "--source", frames)
    assert proc.returncode == 0, proc.stderr
    assert f"match threshold {stored['threshold']:.4f} (calibrated for a false-accept rate of 0.01" in proc.stderr

    looser = f"{stored['threshold'] - 0.1:.3f}"
    proc = door("run", "--config", cfg, "--source", frames, "--threshold", looser)
    assert proc.returncode == 1 and f"threshold {float(looser):g} is looser than the threshold" in proc.stderr
    proc = door("run", "--config", cfg, "--source", frames, "--threshold", "0.99")
    assert proc.returncode == 0 and "match threshold 0.9900 (from the configuration" in proc.stderr


def test_door_cli_errors_are_one_line_and_debug_adds_the_traceback(tmp_path: Path):
    cfg = tmp_path / "door.toml"
    cfg.write_text("[recognition]\nthreshold = -0.5\n")
    proc = door("run", "--config", cfg)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert lines == [f"door_access.py: error: {cfg} [recognition] threshold: -0.5 is out of range; expected > 0.0 and <= 1.0"]
    proc = door("run", "--config", cfg, "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "UnsafeConfigError" in proc.stderr

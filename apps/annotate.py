#!/usr/bin/env python3
"""Annotate pictures or videos with what the face pipeline sees: boxes, landmarks, scores, quality, identities.

    annotate.py --detector DET [--recognizer REC --gallery gallery.db] [--liveness L1 L2] --out annotated/ INPUT...
    annotate.py --config /etc/gfn-door/door.toml --out annotated/ door_clip.mp4 photos/

INPUT is a picture, a folder of pictures or a video file. Each gets an annotated copy in --out
(``NAME.annotated.jpg``, videos ``NAME.annotated.mp4``); the inputs are never modified. With a
gallery every face is labelled with its best identity and similarity (or ``unknown``), using the
threshold given with ``--threshold`` (labels open no door), else the door's rules (the gallery's
calibrated value, which the config may only tighten). ``--json`` also prints one JSON object per picture or video frame.

Useful to check a camera's view and the quality gates before deploying, and to see why the door
did not recognise someone. Exit status: 0 all inputs done; 1 some input could not be read (the
others are still written) or the setup is wrong; 2 bad command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the door/ package beside this file

import cv2
import numpy as np

from gfn_edge import FaceAnalyzer, GfnEdgeError, check_threshold, read_image

from door import draw
from door.config import ConfigError, default_config_path, load_config
from door.models import SetupError, open_analyzer, open_gallery, open_liveness, resolve_threshold
from door.sources import IMAGE_SUFFIXES
from door.video import Recorder, VideoError

PROG = "annotate.py"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg")
log = logging.getLogger("annotate")


class Annotator:
    """Runs the analyzer on a picture and draws the result; identities when a gallery is given."""

    def __init__(self, analyzer: FaceAnalyzer, gallery: Any = None, threshold: Optional[float] = None, liveness: Any = None):
        self.analyzer = analyzer
        self.gallery = gallery
        self.threshold = threshold
        self.liveness = liveness

    def faces(self, image: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for face in self.analyzer.analyze(image):
            item = face.to_dict(embedding=False)
            if self.gallery is not None and face.embedding is not None:
                matches = self.gallery.search(face.embedding, k=1)
                best = matches[0] if matches else None
                item["identity"] = best.identity if best is not None and best.score >= self.threshold else None
                item["nearest"] = best.identity if best is not None else None
                item["similarity"] = None if best is None else round(float(best.score), 5)
            if self.liveness is not None:
                item["liveness"] = round(float(self.liveness.score(image, face.box)), 5)
            out.append(item)
        return out

    def draw(self, image: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
        canvas = image.copy()
        for i, f in enumerate(faces, 1):
            parts = [f"#{i} {f['score']:.2f}"]
            color = draw.GREEN if f["passed"] else draw.AMBER
            if "similarity" in f:
                if f["identity"] is not None:
                    parts.append(f"{f['identity']} {f['similarity']:.2f}")
                else:
                    parts.append("unknown" + (f" {f['similarity']:.2f}" if f["similarity"] is not None else ""))
                    color = draw.RED
            if f.get("liveness") is not None:
                live = f["liveness"] >= getattr(self.liveness, "threshold", 0.5)
                parts.append(f"{'live' if live else 'SPOOF'} {f['liveness']:.2f}")
                if not live:
                    color = draw.RED
            if f["rejected_reasons"]:
                parts.append("[" + ",".join(f["rejected_reasons"]) + "]")
            draw.face_box(canvas, f["box"], color, " ".join(parts), np.asarray(f["landmarks"]))
        draw.status(canvas, f"{len(faces)} face(s)")
        return canvas


# ----------------------------------------------------------------------------- inputs and outputs


def expand(inputs: Sequence[Path]) -> list[Path]:
    """Files to process: pictures and videos as given, folders' pictures and videos (sorted)."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
        else:
            files.append(path)
    return files


def output_path(src: Path, out_dir: Path, taken: set[Path]) -> Path:
    suffix = ".mp4" if src.suffix.lower() in VIDEO_SUFFIXES else (src.suffix.lower() if src.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp") else ".jpg")
    dest = out_dir / f"{src.stem}.annotated{suffix}"
    n = 1
    while dest in taken:
        n += 1
        dest = out_dir / f"{src.stem}-{n}.annotated{suffix}"
    taken.add(dest)
    return dest


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def annotate_image(ann: Annotator, src: Path, dest: Path, as_json: bool) -> int:
    image = read_image(src)
    faces = ann.faces(image)
    ok, data = cv2.imencode(dest.suffix, ann.draw(image, faces), [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise OSError(f"cannot encode {dest.suffix} picture")
    dest.write_bytes(data.tobytes())
    if as_json:
        emit({"input": str(src), "output": str(dest), "faces": faces})
    return len(faces)


def annotate_video(ann: Annotator, src: Path, dest: Path, as_json: bool, max_frames: Optional[int]) -> int:
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise VideoError(f"cannot open video {src}: not a video OpenCV can decode (or its codec is missing)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    recorder = Recorder(dest, fps if 0.1 <= fps <= 1000 else 25.0)
    frames = faces_total = 0
    try:
        while max_frames is None or frames < max_frames:
            ok, image = cap.read()
            if not ok or image is None:
                break
            faces = ann.faces(image)
            recorder.write(ann.draw(image, faces))
            if as_json:
                emit({"input": str(src), "output": str(dest), "frame": frames, "faces": faces})
            frames += 1
            faces_total += len(faces)
    finally:
        cap.release()
        recorder.close()
    if frames == 0:
        dest.unlink(missing_ok=True)
        raise VideoError(f"video {src} opened but no frame could be decoded: the file is damaged or empty")
    log.info("%s: %d frames, %d faces", src, frames, faces_total)
    return faces_total


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="pictures, folders of pictures, or video files")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the annotated copies (created if missing)")
    p.add_argument("--config", type=Path, help="a door TOML config to take models, gallery and threshold from")
    p.add_argument("--detector", type=Path, metavar="BUNDLE")
    p.add_argument("--recognizer", type=Path, metavar="BUNDLE", help="needed for identities and quality blur on aligned crops")
    p.add_argument("--gallery", type=Path, metavar="FILE", help="label faces with enrolled identities")
    p.add_argument("--threshold", type=float, help="match threshold (default: config, gallery's calibrated, model's)")
    p.add_argument("--liveness", type=Path, nargs="+", metavar="BUNDLE", help="also score liveness (the MiniFASNet bundles)")
    p.add_argument("--backend", choices=("auto", "onnxruntime", "tflite", "openvino"))
    p.add_argument("--threads", type=int)
    p.add_argument("--max-faces", type=int, help="keep only the largest N faces per picture")
    p.add_argument("--min-face-size", type=float, default=0.0, help="drop faces smaller than this (pixels)")
    p.add_argument("--max-frames", type=int, help="annotate at most this many frames of each video")
    p.add_argument("--json", action="store_true", help="print one JSON object per picture / video frame")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def setup(args: argparse.Namespace) -> Annotator:
    path = args.config
    if path is None and args.detector is None:  # models from the door's own config
        path = default_config_path()
    cfg = load_config(path)
    for key in ("detector", "recognizer", "backend", "threads"):
        cfg.set("models", key, getattr(args, key))
    cfg.set("models", "liveness", args.liveness)
    cfg.set("gallery", "path", args.gallery)
    cfg.set("recognition", "threshold", args.threshold)
    cfg.detection.max_faces = args.max_faces
    cfg.detection.min_face_size = args.min_face_size
    analyzer = open_analyzer(cfg, recognizer=cfg.models.recognizer is not None)
    liveness = open_liveness(cfg.models, cfg.liveness) if cfg.models.liveness else None
    gallery, threshold = None, None
    if args.gallery is not None or (path is not None and cfg.gallery.path.exists()):
        if analyzer.recognizer is None:
            raise SetupError("labelling identities needs a recogniser: pass --recognizer (or set [models] recognizer)")
        gallery = open_gallery(cfg.gallery.path, analyzer.recognizer, create=False)
        if args.threshold is not None:  # a label on a picture opens no door: the threshold asked for is used
            threshold = check_threshold(args.threshold, "--threshold")
        else:
            threshold = resolve_threshold(cfg, gallery, analyzer.recognizer)
    return Annotator(analyzer, gallery, threshold, liveness)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        ann = setup(args)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ConfigError, SetupError, GfnEdgeError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    files = expand(args.inputs)
    if not files:
        print(f"{PROG}: error: no pictures or videos in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 1
    failed = 0
    taken: set[Path] = set()
    for src in files:
        dest = output_path(src, args.out, taken)
        try:
            if src.suffix.lower() in VIDEO_SUFFIXES:
                n = annotate_video(ann, src, dest, args.json, args.max_frames)
            else:
                n = annotate_image(ann, src, dest, args.json)
        except (GfnEdgeError, VideoError, OSError, cv2.error) as exc:
            failed += 1
            print(f"{PROG}: error: {src}: {exc}", file=sys.stderr)
            continue
        print(f"{src} -> {dest} ({n} face(s))", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

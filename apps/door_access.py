#!/usr/bin/env python3
"""Door access on an edge board: recognise enrolled people at a camera and open the door for them.

    door_access.py run --config /etc/gfn-door/door.toml          # the service (also the default command)
    door_access.py enroll --name alice alice1.jpg alice2.jpg      # from photos
    door_access.py enroll --name alice --camera 0 --frames 5      # from the door camera
    door_access.py list | remove NAME
    door_access.py events --since 24h --decision grant --json     # query the event log
    door_access.py calibrate --pairs pairs.csv [--save]           # FAR/FRR and a threshold

Every command reads the TOML config (``--config``, else $GFN_DOOR_CONFIG, else
/etc/gfn-door/door.toml when present); flags override it. See apps/README.md and
apps/door_access.example.toml.

Exit status: 0 success (for ``run``: the source ended or the service was stopped); 1 a problem
the message explains (bad config, missing bundle, damaged gallery, unreadable video, a camera
given up on after --max-reconnects, nothing enrolled, no calibrated threshold); 2 bad command
line; 3 an unexpected error (a bug: ``--debug`` shows its traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the door/ package beside this file

from gfn_edge import GalleryError, GfnEdgeError, run_cli

from door.actions import ActionError
from door.calibrate import CalibrationInputError
from door.config import Config, ConfigError, check_safety, default_config_path, load_config
from door.enroll import EnrollError
from door.events import EventLogError
from door.models import SetupError
from door.sources import SourceError
from door.video import VideoError

PROG = "door_access.py"
COMMANDS = ("run", "enroll", "list", "remove", "events", "calibrate")
EXPECTED_ERRORS = (
    ConfigError,
    SetupError,
    SourceError,
    EnrollError,
    EventLogError,
    CalibrationInputError,
    ActionError,
    VideoError,
    GfnEdgeError,
)
log = logging.getLogger("door")


# ----------------------------------------------------------------------------- arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0 (``inf`` would wait for ever, ``nan`` never compares)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config (default: $GFN_DOOR_CONFIG, else /etc/gfn-door/door.toml if present)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _models(p: argparse.ArgumentParser, liveness: bool = False) -> None:
    g = p.add_argument_group("models (override [models])")
    g.add_argument("--detector", type=Path, metavar="BUNDLE", help="detector bundle folder")
    g.add_argument("--recognizer", type=Path, metavar="BUNDLE", help="recogniser bundle folder")
    if liveness:
        g.add_argument("--liveness", type=Path, nargs="+", metavar="BUNDLE", help="liveness bundle folders (the two MiniFASNet ones)")
        g.add_argument("--no-liveness", action="store_true", help="turn the liveness check off (warned at start-up)")
    g.add_argument("--backend", choices=("auto", "onnxruntime", "tflite", "openvino"), help="inference backend")
    g.add_argument("--threads", type=_positive_int, help="inference threads (default: physical cores)")


def _gallery(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gallery", type=Path, metavar="FILE", help="gallery file (overrides [gallery] path)")
    p.add_argument("--gallery-url", metavar="URL", help="a fleet's central gallery, postgresql://user@host/db (overrides [gallery] url)")


def _add_run_command(sub) -> None:
    """The service: watch a source, decide, act, log."""
    p = sub.add_parser("run", help="watch the camera and decide (the service)", description="Watch a source, recognise, decide, act and log.")
    _common(p)
    _models(p, liveness=True)
    _gallery(p)
    p.add_argument("--source", help="camera index, /dev/videoN, video file, rtsp:// or http:// URL, or a folder of pictures")
    p.add_argument("--events-db", type=Path, metavar="FILE", help="event log file (overrides [events] db)")
    p.add_argument(
        "--threshold", type=float, help="match threshold on cosine similarity: may only tighten the calibrated one (overrides [recognition] threshold)"
    )
    p.add_argument(
        "--uncalibrated-threshold",
        type=float,
        metavar="X",
        help="run on threshold X although none was calibrated on this recogniser (loudly warned; strangers may be granted)",
    )
    p.add_argument("--consecutive", type=_positive_int, help="agreeing observations needed for a decision")
    p.add_argument("--cooldown", type=float, help="seconds before the same identity is granted again")
    p.add_argument("--liveness-threshold", type=float, help="real-face probability needed")
    p.add_argument("--snapshots", type=Path, metavar="DIR", help="write JPEG snapshots of unknown / denied faces here")
    p.add_argument("--show", action="store_true", help="show frames with boxes, names and FPS (needs a display)")
    p.add_argument("--record", type=Path, metavar="VIDEO", help="write the annotated frames to a video (.mp4, .avi, .mkv)")
    p.add_argument("--max-reconnects", type=_count, metavar="N", help="give up on a live source after N failed reconnections (default: never)")
    p.add_argument("--reconnect-delay", type=float, metavar="S", help="first wait between reconnections (doubles up to 30 s)")
    p.set_defaults(func=cmd_run)


def _add_enroll_command(sub) -> None:
    """Enrolment from photos or the door camera."""
    p = sub.add_parser("enroll", help="enrol a person from photos or the camera", description="Enrol NAME from photos, or from --camera.")
    _common(p)
    _models(p, liveness=True)
    _gallery(p)
    p.add_argument("--name", required=True, help="the identity's name (what the event log and actions show)")
    p.add_argument("photos", nargs="*", type=Path, metavar="PHOTO", help="photos of the person (largest face of each is used)")
    p.add_argument("--camera", metavar="SOURCE", help="capture from this source instead (camera index, /dev/videoN, URL or video file)")
    p.add_argument("--frames", type=_positive_int, default=5, metavar="K", help="good camera frames to capture (default 5)")
    p.add_argument("--interval", type=_seconds, default=0.5, metavar="S", help="least time between captured frames (default 0.5 s)")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="S", help="give up after this long (default 60 s)")
    p.add_argument("--replace", action="store_true", help="replace the person's templates instead of adding to them")
    p.add_argument("--allow-low-quality", action="store_true", help="use photos whose face fails the quality gates")
    p.set_defaults(func=cmd_enroll)


def _add_list_command(sub) -> None:
    """Listing enrolled identities."""
    p = sub.add_parser("list", help="enrolled identities", description="List enrolled identities.")
    _common(p)
    _gallery(p)
    p.add_argument("--json", action="store_true", help="one JSON object per identity")
    p.set_defaults(func=cmd_list)


def _add_remove_command(sub) -> None:
    """Deleting an identity."""
    p = sub.add_parser("remove", help="delete an identity", description="Delete NAME and its templates from the gallery.")
    _common(p)
    _gallery(p)
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_remove)


def _add_events_command(sub) -> None:
    """Querying the event log."""
    p = sub.add_parser("events", help="query the event log", description="Print events, oldest first.")
    _common(p)
    p.add_argument("--db", "--events-db", dest="db", type=Path, metavar="FILE", help="event log file (overrides [events] db)")
    p.add_argument("--since", help="from this time: 90s, 30m, 2h, 7d, today, or an ISO date/time (local)")
    p.add_argument("--until", help="up to this time (same forms)")
    p.add_argument("--identity", help="only this identity")
    p.add_argument("--decision", action="append", choices=("grant", "deny", "unknown", "cooldown"), help="only these decisions (repeatable)")
    p.add_argument("--limit", type=_positive_int, help="only the newest N")
    p.add_argument("--json", action="store_true", help="one JSON object per event")
    p.add_argument("--gallery-url", metavar="URL", help="a fleet's central server (overrides [gallery] url): query every door's events")
    p.add_argument("--door", help="fleet: only this door's events")
    p.add_argument("--local", action="store_true", help="fleet: this door's own local log instead of the central one")
    p.set_defaults(func=cmd_events)


def _add_calibrate_command(sub) -> None:
    """FAR/FRR on labelled photos and a suggested threshold."""
    p = sub.add_parser(
        "calibrate",
        help="FAR/FRR on labelled photos and a suggested threshold",
        description=("Score labelled photos with the door's models and suggest the threshold for a target false-accept rate."),
    )
    _common(p)
    _models(p)
    _gallery(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", type=Path, metavar="CSV", help="CSV with header image_a,image_b,same (paths relative to the CSV)")
    src.add_argument("--folders", type=Path, metavar="DIR", help="folder with one sub-folder of photos per person")
    p.add_argument("--target-far", type=float, default=0.01, help="false-accept rate the threshold is chosen for (default 0.01)")
    p.add_argument("--include-low-quality", action="store_true", help="also score faces failing the quality gates")
    p.add_argument("--save", action="store_true", help="store the suggested threshold in the gallery (used when the config sets none)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_calibrate)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job, each with the shared --config/-v/-q flags."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `door_access.py COMMAND --help` for each command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_run_command(sub)
    _add_enroll_command(sub)
    _add_list_command(sub)
    _add_remove_command(sub)
    _add_events_command(sub)
    _add_calibrate_command(sub)
    return parser


# ----------------------------------------------------------------------------- configuration


def configure(args: argparse.Namespace) -> Config:
    """The config file, with this command's flags laid over it."""
    path = args.config if args.config is not None else default_config_path()
    cfg = load_config(path)
    over: list[tuple[str, str, Any]] = [
        ("models", "detector", getattr(args, "detector", None)),
        ("models", "recognizer", getattr(args, "recognizer", None)),
        ("models", "liveness", getattr(args, "liveness", None)),
        ("models", "backend", getattr(args, "backend", None)),
        ("models", "threads", getattr(args, "threads", None)),
        ("gallery", "path", getattr(args, "gallery", None)),
        ("gallery", "url", getattr(args, "gallery_url", None)),
        ("source", "uri", getattr(args, "source", None)),
        ("source", "max_reconnects", getattr(args, "max_reconnects", None)),
        ("source", "reconnect_delay", getattr(args, "reconnect_delay", None)),
        ("events", "db", getattr(args, "events_db", None) or getattr(args, "db", None)),
        ("recognition", "threshold", getattr(args, "threshold", None)),
        ("recognition", "uncalibrated_threshold", getattr(args, "uncalibrated_threshold", None)),
        ("recognition", "consecutive", getattr(args, "consecutive", None)),
        ("decision", "cooldown", getattr(args, "cooldown", None)),
        ("liveness", "threshold", getattr(args, "liveness_threshold", None)),
        ("snapshots", "dir", getattr(args, "snapshots", None)),
        ("display", "record", getattr(args, "record", None)),
    ]
    for section, key, value in over:
        cfg.set(section, key, value)
    if getattr(args, "no_liveness", False):
        cfg.liveness.enabled = False
    if getattr(args, "show", False):
        cfg.display.show = True
    check_safety(cfg, str(cfg.path or "command line"))
    return cfg


def gallery_where(cfg: Config) -> str:
    """The gallery as messages name it: the file, or the fleet's server without password."""
    if cfg.gallery.url is None:
        return str(cfg.gallery.path)
    from door.fleet import replica_location

    return replica_location(cfg)


def setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    from door.service import run

    return run(cfg)


def cmd_enroll(args: argparse.Namespace, cfg: Config) -> int:
    from door.enroll import enroll_camera, enroll_photos
    from door.models import gallery_location, open_analyzer, open_gallery, open_liveness
    from door.service import make_source

    if bool(args.photos) == bool(args.camera):
        raise SetupError("give photos to enrol from, or --camera SOURCE, but not both")
    analyzer = open_analyzer(cfg)
    with open_gallery(gallery_location(cfg), analyzer.recognizer, create=True) as gallery:
        if args.camera is not None:
            cfg.source.uri = args.camera
            source = make_source(cfg)
            liveness = open_liveness(cfg.models, cfg.liveness)
            result = enroll_camera(
                analyzer, gallery, args.name, source, args.frames, args.interval, args.timeout, liveness=liveness, replace=args.replace, say=_say
            )
        else:
            result = enroll_photos(analyzer, gallery, args.name, args.photos, replace=args.replace, allow_low_quality=args.allow_low_quality, say=_say)
    skipped = f"; {len(result.skipped)} photo(s) skipped" if result.skipped else ""
    print(f"enrolled {result.name!r}: +{result.added} template(s), {result.total} in all{skipped}")
    return 0


def cmd_list(args: argparse.Namespace, cfg: Config) -> int:
    from door.models import gallery_location, open_gallery

    # not readonly=True: a read-only SQLite connection leaves the -wal/-shm files of a WAL gallery behind
    with open_gallery(gallery_location(cfg), None, create=False) as gallery:
        rows = [(name, len(gallery.embeddings(name)), gallery.metadata(name)) for name in gallery.identities()]
        model = gallery.signature
        threshold = gallery.threshold
    if args.json:
        for name, n, meta in rows:
            print(json.dumps({"name": name, "templates": n, "metadata": meta}, sort_keys=True))
        return 0
    if not rows:
        print(f"gallery {gallery_where(cfg)} ({model}): nobody enrolled")
        return 0
    width = max(len(r[0]) for r in rows)
    print(f"gallery {gallery_where(cfg)} ({model}{f', threshold {threshold:.4f}' if threshold is not None else ''}): {len(rows)} identities")
    for name, n, meta in rows:
        print(f"  {name:<{width}}  {n:3d} template(s)  {meta.get('source', '')} {meta.get('enrolled', '')}".rstrip())
    return 0


def cmd_remove(args: argparse.Namespace, cfg: Config) -> int:
    from door.models import gallery_location, open_gallery

    with open_gallery(gallery_location(cfg), None, create=False) as gallery:
        n = gallery.remove(args.name)
    if n == 0:
        raise SetupError(f"{args.name!r} is not enrolled in {gallery_where(cfg)} (see door_access.py list)")
    print(f"removed {args.name!r} ({n} template(s))")
    return 0


def cmd_events(args: argparse.Namespace, cfg: Config) -> int:
    from door.events import EventLog, format_table, parse_time, to_json_lines

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    if cfg.gallery.url is not None and not args.local:  # a fleet: every door's events, from the central log
        from door.shipper import query_central

        rows = query_central(cfg.gallery.url, since, until, args.identity, args.decision, args.limit, args.door)
    else:
        with EventLog(cfg.events.db, readonly=True) as events:
            rows = events.query(since, until, args.identity, args.decision, args.limit)
    if args.json:
        if rows:
            print(to_json_lines(rows))
    else:
        print(format_table(rows))
    return 0


def cmd_calibrate(args: argparse.Namespace, cfg: Config) -> int:
    from door.calibrate import Embeddings, calibrate, format_report, scores_from_folders, scores_from_pairs
    from door.models import gallery_location, open_analyzer, open_gallery

    if not 0.0 < args.target_far < 1.0:  # checked before minutes of embedding, not after
        raise CalibrationInputError(f"--target-far must be a rate between 0 and 1 (e.g. 0.01), got {args.target_far}")
    source = args.pairs if args.pairs is not None else args.folders
    if not source.exists():
        raise CalibrationInputError(f"{source} does not exist")
    analyzer = open_analyzer(cfg)
    embed = Embeddings(analyzer, args.include_low_quality, say=_say)
    if args.pairs is not None:
        scores = scores_from_pairs(embed, args.pairs)
    else:
        if not args.folders.is_dir():
            raise CalibrationInputError(f"{args.folders} is not a folder")
        scores = scores_from_folders(embed, args.folders)
    result = calibrate(scores, args.target_far)
    enrolled = None
    if args.save or cfg.gallery.url is not None or cfg.gallery.path.exists():
        try:
            with open_gallery(gallery_location(cfg), analyzer.recognizer, create=args.save) as gallery:
                enrolled = gallery.count()
                if args.save:
                    gallery.set_calibration(result.threshold, result.target_far, analyzer.recognizer.signature)
                    _say(
                        f"saved threshold {result.threshold:.4f} (target FAR {result.target_far:g}, "
                        f"recogniser {analyzer.recognizer.signature}) in {gallery_where(cfg)}"
                    )
        except GalleryError:
            if args.save:
                raise
    if args.json:
        out = result.to_dict()
        out["excluded"] = scores.excluded
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(format_report(result, scores.excluded, enrolled))
    return 0


# ----------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The door's commands; every error ends as ``door_access.py: error: <one line>`` (``--debug``: with its traceback)."""
    return run_cli(PROG, _main, argv, expected=EXPECTED_ERRORS)


def _main(argv: list[str]) -> int:
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")  # `door_access.py --config x.toml` runs the door
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    func: Callable[[argparse.Namespace, Config], int] = args.func
    cfg = configure(args)
    return int(func(args, cfg))


if __name__ == "__main__":
    sys.exit(main())

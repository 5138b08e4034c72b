"""``gfn-edge gallery ...``: look after gallery files from the shell.

    gfn-edge gallery check PATH...   verify every template (exit 1 on any damage)
    gfn-edge gallery info PATH       signature, dim, schema, counts, stored threshold (JSON)
    gfn-edge gallery copy SRC DST    every template to a new or empty gallery (SQLite <-> PostgreSQL)

``check`` opens each gallery read-only (nothing is created, migrated or repaired), runs the
thorough structural check and verifies every template's checksum and vector. It prints one line
per damaged template naming the identity to re-enrol (or one line saying why the gallery was
refused as a whole), and a final ok line per intact gallery; ``--json`` prints the reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_gallery_commands(sub: Any) -> None:
    """Register the ``gallery`` command group on the main parser's subparsers."""
    group = sub.add_parser("gallery", help="check and inspect gallery files", description="Check and inspect gallery files.")
    commands = group.add_subparsers(dest="gallery_command", metavar="GALLERY_COMMAND")
    commands.required = True

    p = commands.add_parser(
        "check",
        help="verify every stored template (exit 1 on damage)",
        description="Verify the structure and every template of each gallery; one line per damaged template.",
    )
    p.add_argument("galleries", nargs="+", metavar="PATH", help="gallery file (or postgresql:// URL)")
    p.add_argument("--quick", action="store_true", help="SQLite quick_check instead of the full integrity_check")
    p.add_argument("--json", action="store_true", help="print one JSON report per gallery instead of lines")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.set_defaults(func=_check)

    p = commands.add_parser("info", help="model, size and threshold of a gallery", description="Print one JSON object.")
    p.add_argument("gallery", metavar="PATH")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.set_defaults(func=_info)

    p = commands.add_parser(
        "copy",
        help="copy a gallery to a new or empty one (SQLite file <-> postgresql:// URL)",
        description="Copy every intact template, the metadata and the threshold, in one transaction.",
    )
    p.add_argument("src", metavar="SRC", help="gallery file or postgresql:// URL")
    p.add_argument("dst", metavar="DST", help="new or empty gallery file or postgresql:// URL")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    p.set_defaults(func=_copy)


def _check(args: argparse.Namespace) -> int:
    from .integrity import check_gallery

    failed = 0
    for location in args.galleries:
        report = check_gallery(location, thorough=not args.quick)
        failed += not report.ok
        if args.json:
            sys.stdout.write(json.dumps(report.to_dict()) + "\n")
        else:
            stream = sys.stdout if report.ok else sys.stderr
            for line in report.lines():
                print(line, file=stream)
    return 1 if failed else 0


def _copy(args: argparse.Namespace) -> int:
    from .copy import copy_gallery

    copied = copy_gallery(args.src, args.dst)
    sys.stdout.write(json.dumps({"src": _redacted(args.src), "dst": _redacted(args.dst), "templates": copied}) + "\n")
    return 0


def _redacted(location: str) -> str:
    from .postgres_schema import redact_url

    return redact_url(location) if "://" in location else location


def _info(args: argparse.Namespace) -> int:
    from .facade import Gallery

    with Gallery(args.gallery, create=False, readonly=True) as gallery:
        record = gallery.threshold_info
        out = {
            "gallery": str(args.gallery),
            "signature": gallery.signature,
            "dim": gallery.dim,
            "schema_version": gallery.schema_version,
            "identities": gallery.count(),
            "templates": gallery.num_templates,
            "threshold": None if record is None else record.to_dict(),
        }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0

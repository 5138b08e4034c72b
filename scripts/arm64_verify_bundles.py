"""Verify existing bundles on x86 and on emulated ARM CPUs, and print the bundle x platform table.

    python scripts/arm64_verify_bundles.py --cpus cortex-a72,cortex-a76 [--max-images 16]
        [--exclude-folder CALIB_PHOTOS] [--checkpoint MY_MODEL.h5] [--json OUT.json] [--no-write] BUNDLE_OR_FOLDER...

For bundles exported before ``gfn-export --verify-on`` existed (or to re-check them after a
runtime upgrade): the reference model runs once per model on the verification pictures
($GFN_EDGE_VERIFY_IMAGES), every bundle is judged on this machine and on each emulated CPU on the
same pictures with the export's tolerances, and each manifest's ``verification.platforms`` is
rewritten (unless --no-write). Needs the training side (the reference) and scripts/arm64.sh.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gfn_edge.export.verify_on import parse_platforms, verify_existing
from gfn_edge.image import list_images
from gfn_edge.manifest import find_bundles

METRICS = {
    "embed": ("cos_mean", "cos_min", "pair_acc_delta", "pair_decisions_expected_agree"),
    "detect": ("recall", "precision", "box_err_px", "landmark_err_px", "landmark_nme", "output_rel_err"),
    "liveness": ("prob_err", "decision_agree"),
}


def _cell(entry: dict) -> str:
    m = entry.get("metrics") or {}
    task = "embed" if "cos_min" in m else "detect" if "recall" in m else "liveness"
    values = ", ".join(f"{k} {_number(k, m[k])}" for k in METRICS[task] if k in m)
    verdict = "PASS" if entry.get("passed") else "FAIL: " + "; ".join(entry.get("failures") or [])
    return f"{verdict} ({values})" if values else verdict


def _number(key: str, value: object) -> str:
    """Cosines near 1 as 1-x (they all start 0.9999...), other floats to 4 significant digits."""
    if not isinstance(value, float):
        return str(value)
    if key.startswith("cos") and value > 0.999:
        return f"1-{1 - value:.1e}"
    return f"{value:.4g}"


def table(rows: list[dict]) -> str:
    cpus = [p["platform"] for p in rows[0]["platforms"]] if rows else []
    lines = [
        "| bundle | pictures | x86 (" + (rows[0]["host"].get("cpu", "host") if rows else "") + ") | " + " | ".join(cpus) + " |",
        "|---|---|---|" + "---|" * len(cpus),
    ]
    for r in rows:
        cells = [_cell(r["host"])] + [f"{_cell(p)} [{p.get('runtime')}, {p.get('inference_precision')}]" for p in r["platforms"]]
        lines.append(f"| {r['model']}-{r['target']} | {r['pictures']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="bundle folders, or folders holding bundles")
    p.add_argument("--cpus", default="cortex-a72,cortex-a76")
    p.add_argument("--max-images", type=int, default=48, help="detector pictures (default 48, as gfn-export)")
    p.add_argument("--exclude-folder", help="leave out pictures with the names of those in this folder (an INT8 calibration set)")
    p.add_argument("--verify-images", help="verification pictures (default: $GFN_EDGE_VERIFY_IMAGES)")
    p.add_argument("--checkpoint", action="append", default=[], help="a user's own checkpoint file the bundles were exported from (repeatable)")
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--no-write", action="store_true", help="leave the manifests as they are")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bundles = find_bundles(args.paths)
    if not bundles:
        print(f"no bundles under {' '.join(args.paths)}", file=sys.stderr)
        return 2
    exclude = {f.name for f in list_images(Path(args.exclude_folder))} if args.exclude_folder else None

    def progress(row: dict) -> None:
        print(table([row]).splitlines()[-1], flush=True)
        if args.json:
            with open(args.json + "l", "a") as fh:
                fh.write(json.dumps(row, default=str) + "\n")

    rows = verify_existing(
        bundles,
        parse_platforms(args.cpus),
        args.verify_images,
        max_images=args.max_images,
        exclude=exclude,
        write=not args.no_write,
        on_row=progress,
        checkpoints=[Path(c) for c in args.checkpoint],
    )
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if all(r["host"].get("passed") and all(p.get("passed") for p in r["platforms"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

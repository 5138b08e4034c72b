"""The ``gfn-calib`` command: :mod:`gfn_edge.calib.cli` with the reference face detector plugged in.

It lives on the export side because finding faces for recogniser and liveness calibration sets
takes the reference RetinaFace (PyTorch), and calibration must not import export.
"""

from __future__ import annotations

import sys

from gfn_edge.calib.cli import main as calib_main

from .faces import ReferenceFaces
from .reference import resolve_spec


def main(argv: list[str] | None = None) -> int:
    """gfn-calib build / inspect (see ``gfn-calib --help``); ``--model`` takes a checkpoint file
    too, named as gfn-export names it, so the set it saves is accepted by that export."""
    return calib_main(
        argv,
        faces_for=lambda mirror: ReferenceFaces(mirror=mirror),
        spec_for=lambda model: resolve_spec(model, None, None, random_weights=True)[0],
    )


if __name__ == "__main__":
    sys.exit(main())

"""The ``gfn-calib`` command: :mod:`gfn_edge.calib.cli` with the reference face detector plugged in.

It lives on the export side because finding faces for recogniser and liveness calibration sets
takes the reference RetinaFace (PyTorch), and calibration must not import export.
"""

from __future__ import annotations

import sys

from gfn_edge.calib.cli import main as calib_main

from .faces import ReferenceFaces


def main(argv: list[str] | None = None) -> int:
    """gfn-calib build / inspect (see ``gfn-calib --help``)."""
    return calib_main(argv, faces_for=lambda mirror: ReferenceFaces(mirror=mirror))


if __name__ == "__main__":
    sys.exit(main())

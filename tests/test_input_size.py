"""The detector input size a user asks for, held to one rule on every entry (gfn_edge.checks.check_input_size)."""

from __future__ import annotations

import pytest


def test_a_detector_input_size_is_held_to_what_a_detector_can_run_on_every_entry(capsys):
    """99999x99999 once reached OpenCV (a 30 GB canvas) and ended in a crash report; gfn-calib took
    any text. gfn-export, gfn-calib and ModelSpec.with_input_size share one rule."""
    from gfn_edge.calib.cli import build_parser as calib_parser
    from gfn_edge.errors import InvalidArgumentError
    from gfn_edge.export.cli import build_parser as export_parser
    from gfn_edge.registry import get_spec

    spec = get_spec("retinaface-mnet025")
    assert spec.with_input_size((320, 240)).preprocess.input_size == (320, 240)
    assert spec.with_input_size((4096, 32)).preprocess.input_size == (4096, 32)
    assert spec.with_input_size(None).preprocess.input_size is None
    for bad in ((99999, 99999), (4097, 480), (31, 480), (640.5, 480), (640,), "640x480", (True, 480)):
        with pytest.raises(InvalidArgumentError, match="input size"):
            spec.with_input_size(bad)
    export_base = ["--model", "m", "--out", "o"]
    calib_base = ["build", "--model", "m", "--images", "i", "--out", "o.npz"]
    assert export_parser().parse_args(export_base + ["--input-size", "320X240"]).input_size == (320, 240)
    for parser, base in ((export_parser, export_base), (calib_parser, calib_base)):
        for bad in ("99999x99999", "16x16", "640", "wide", "640x480x3"):
            with pytest.raises(SystemExit):
                parser().parse_args(base + ["--input-size", bad])
            assert "--input-size" in capsys.readouterr().err

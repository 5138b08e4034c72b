"""The one pairs.csv reader (gfn_edge.pairs) and its one rule for the ``same`` column.

Every tool reads pairs through it (gfn-eval, the door's threshold calibration, export
verification's face sets, the benchmark's recogniser sanity), so the rule is tested once here,
with hypothesis over letter case, spacing and arbitrary other words.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest
from conftest import ROOT, shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfn_edge.errors import GfnEdgeError
from gfn_edge.pairs import (
    DIFFERENT_WORDS,
    SAME_WORDS,
    PairRow,
    PairsFileError,
    parse_same,
    read_pairs,
)

sys.path.insert(0, str(ROOT / "apps"))

ACCEPTED = sorted(SAME_WORDS | DIFFERENT_WORDS)


def _mixed_case(word: str, flips: list[bool]) -> str:
    return "".join(c.upper() if f else c for c, f in zip(word, flips + [False] * len(word)))


def _write(path: Path, rows: list[list[str]], header: tuple[str, ...] = ("image_a", "image_b", "same", "source")) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_the_rule_is_exactly_four_word_pairs():
    assert {"1", "true", "yes", "same"} == SAME_WORDS
    assert {"0", "false", "no", "different"} == DIFFERENT_WORDS


@given(
    word=st.sampled_from(ACCEPTED),
    flips=st.lists(st.booleans(), max_size=9),
    left=st.sampled_from(["", " ", "  ", "\t"]),
    right=st.sampled_from(["", " ", "\t "]),
)
def test_accepted_words_parse_in_any_case_and_spacing(word, flips, left, right):
    assert parse_same(left + _mixed_case(word, flips) + right) is (word in SAME_WORDS)


@given(text=st.text(max_size=12).filter(lambda t: t.strip().lower() not in SAME_WORDS | DIFFERENT_WORDS))
def test_anything_else_is_an_error_naming_where_and_what(text):
    with pytest.raises(PairsFileError) as err:
        parse_same(text, "pairs.csv:7")
    assert "pairs.csv:7" in str(err.value) and repr(text) in str(err.value)
    assert isinstance(err.value, GfnEdgeError) and isinstance(err.value, ValueError)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9_]{1,8}\.jpg", fullmatch=True),
            st.from_regex(r"[a-z0-9_]{1,8}\.png", fullmatch=True),
            st.sampled_from(ACCEPTED),
            st.sampled_from(["", "lfw", "my photos"]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_rows_come_back_as_written(tmp_path, rows):
    path = _write(tmp_path / "pairs.csv", [[a, b, s.upper(), src] for a, b, s, src in rows])
    assert read_pairs(path) == [PairRow(a, b, s in SAME_WORDS, src) for a, b, s, src in rows]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(good=st.integers(0, 6), bad=st.sampled_from(["maybe", "2", "-1", "y", "n", "t", "f", "", "sam e", "truE!"]))
def test_a_bad_row_names_its_line_and_value(tmp_path, good, bad):
    rows = [["a.jpg", "b.jpg", "1", ""]] * good + [["c.jpg", "d.jpg", bad, ""]]
    path = _write(tmp_path / "pairs.csv", rows)
    with pytest.raises(PairsFileError, match=rf"pairs\.csv:{good + 2}: 'same' must be .* got {bad!r}"):
        read_pairs(path)


def test_file_level_errors_name_the_file(tmp_path):
    with pytest.raises(PairsFileError, match="cannot read .*missing.csv"):
        read_pairs(tmp_path / "missing.csv")
    with pytest.raises(PairsFileError, match=r"columns .* \(missing same\)"):
        read_pairs(_write(tmp_path / "a.csv", [["x", "y"]], header=("image_a", "image_b")))
    with pytest.raises(PairsFileError, match="no pairs"):
        read_pairs(_write(tmp_path / "b.csv", []))
    with pytest.raises(PairsFileError, match=r"c\.csv:3: image_a and image_b"):
        read_pairs(_write(tmp_path / "c.csv", [["a.jpg", "b.jpg", "1", ""], ["", "b.jpg", "0", ""]]))
    (tmp_path / "d.csv").write_bytes(b"image_a,image_b,same\n\xff\xfe,b,1\n")
    with pytest.raises(PairsFileError, match="UTF-8"):
        read_pairs(tmp_path / "d.csv")


def test_header_spacing_and_byte_order_mark_are_tolerated(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("\ufeffimage_a, image_b, same\n a.jpg , b.jpg , Same \n", encoding="utf-8")
    assert read_pairs(path) == [PairRow("a.jpg", "b.jpg", True, "")]


def test_every_tool_reads_the_shared_pairs_file_alike():
    """gfn-eval, export verification and the benchmark read the real pairs.csv to the same labels."""
    from gfn_edge.benchmark.sanity import read_pairs as bench_read
    from gfn_edge.export.evaluation.pairs_csv import read_pairs as eval_read
    from gfn_edge.export.verify_data import read_pairs_csv as verify_read

    folder = shared_path("faces", "pairs")
    rows = read_pairs(folder / "pairs.csv")
    triples = [(r.image_a, r.image_b, r.same) for r in rows]
    assert len(rows) > 300 and any(r.same for r in rows) and not all(r.same for r in rows)
    assert eval_read(folder / "pairs.csv") == rows
    assert verify_read(folder / "pairs.csv") == triples
    assert bench_read(folder) == triples


def test_door_calibration_reports_a_bad_label_as_its_input_error(tmp_path):
    from door.calibrate import CalibrationInputError, scores_from_pairs

    class NoEmbeddings:  # never reached: the file is refused while reading
        def __init__(self):
            self.excluded: dict = {}

        def __call__(self, path):
            raise AssertionError("embedded a picture of a file that should have been refused")

    path = _write(tmp_path / "pairs.csv", [["a.jpg", "b.jpg", "perhaps", ""]])
    with pytest.raises(CalibrationInputError, match=r"pairs\.csv:2: .*'perhaps'"):
        scores_from_pairs(NoEmbeddings(), path)

"""The list options' one reader (gfn-export's --target and --verify-on, gfn-bench's lists)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gfn_edge.arg_types import names_given

_name = st.text(alphabet="abcxyz09-.", min_size=1, max_size=6)


@given(st.lists(st.lists(_name, max_size=4), max_size=4), st.sampled_from(["", " ", "  "]))
def test_every_name_of_every_repeat_is_read_once_in_order(repeats, pad):
    """However the names are spread over repeated flags and commas (with blanks and empty items),
    the reader returns each once, in the order first given: a name dropped or a repeat that
    overwrote the ones before would be a flag silently ignored."""
    flags = [",".join(f"{pad}{n}{pad}" for n in names) + ("," if names else "") for names in repeats]
    every = [n for names in repeats for n in names]
    assert names_given(flags) == list(dict.fromkeys(every))


def test_one_string_and_nothing():
    assert names_given("onnx, tflite-int8,,onnx") == ["onnx", "tflite-int8"]
    assert names_given(None) == [] and names_given([]) == [] and names_given(" , ") == []

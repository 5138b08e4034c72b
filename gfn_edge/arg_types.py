"""Argument types for the command-line tools, over :mod:`.checks`: a flag is refused by argparse
with the same rule the Python API applies to the same setting."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable

from .checks import MAX_INPUT_SIDE, MIN_INPUT_SIDE, check_count, check_input_size
from .errors import GfnEdgeError


def count(minimum: int = 1) -> Callable[[str], int]:
    """A whole number of at least ``minimum``, e.g. ``type=count(0)`` for a cap that may be 0."""

    wanted = "a positive integer" if minimum == 1 else f"a whole number >= {minimum}"

    def parse(text: str) -> int:
        try:
            return check_count(int(text), "the value", minimum)
        except (ValueError, GfnEdgeError):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None

    parse.__name__ = f"count({minimum})"  # argparse names the type in its messages
    return parse


def input_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` of a detector input, e.g. 640x480, with :func:`.checks.check_input_size`'s limits."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    try:
        return check_input_size((w, h), f"input size {text}")
    except GfnEdgeError:
        raise argparse.ArgumentTypeError(f"input size {text}: both sides must be {MIN_INPUT_SIDE} to {MAX_INPUT_SIDE}") from None


def names_given(given: str | Iterable[str] | None) -> list[str]:
    """A list option's names, from ``"a,b"``, from the flag repeated (argparse's ``append``: a list of
    such strings) or both: stripped, empty ones dropped, each once, in the order first given. Why one
    function: gfn-export's --target and --verify-on and gfn-bench's list options read them alike
    (argparse alone keeps only the last of a repeated flag); each still checks the names itself."""
    items = [given] if isinstance(given, str) else list(given or [])
    return list(dict.fromkeys(name.strip() for item in items for name in item.split(",") if name.strip()))

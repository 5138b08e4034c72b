"""Argument types for the command-line tools, over :mod:`.checks`: a flag is refused by argparse
with the same rule the Python API applies to the same setting."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .checks import check_count
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

"""One path component made from a name the user chose (a checkpoint's file name, a pairs file,
a model): the bundle folders, plots and prediction folders written from it must stay inside
the folder they are written to and be visible there."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, fallback: str) -> str:
    """``text`` with each run of anything but ASCII letters, digits, ``.``, ``_`` and ``-`` made
    one ``-``, and no dot or dash at either end (no hidden file, no ``..``); ``fallback`` where
    nothing is left."""
    return _UNSAFE.sub("-", text).strip("-.") or fallback

"""The one reader of labelled face pairs: ``pairs.csv`` with a header ``image_a,image_b,same[,source]``.

Why one reader: gfn-eval, the door's threshold calibration, export verification and the
benchmark all read the same files, and four readers had grown three different ideas of what
``same`` may say (one silently took any unknown word for "different", which turns a typo into
a wrong label). The rule here, for everyone: ``same`` is 1/0, true/false, yes/no or
same/different, in any letter case, surrounding spaces ignored; anything else is an error that
names the file, the line and the value. Image paths are kept as written (relative to the CSV's
folder by convention); ``source`` is an optional free-text column.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import PairsFileError

__all__ = ["DIFFERENT_WORDS", "REQUIRED_COLUMNS", "SAME_WORDS", "PairRow", "PairsFileError", "parse_same", "read_pairs"]

SAME_WORDS = frozenset({"1", "true", "yes", "same"})
DIFFERENT_WORDS = frozenset({"0", "false", "no", "different"})
REQUIRED_COLUMNS = ("image_a", "image_b", "same")


@dataclass(frozen=True)
class PairRow:
    """One labelled pair: two pictures and whether they show the same person."""

    image_a: str
    image_b: str
    same: bool
    source: str = ""


def parse_same(value: object, where: str = "") -> bool:
    """The boolean a ``same`` cell means; :class:`PairsFileError` naming ``where`` for anything else."""
    word = str(value).strip().lower() if value is not None else ""
    if word in SAME_WORDS:
        return True
    if word in DIFFERENT_WORDS:
        return False
    prefix = f"{where}: " if where else ""
    raise PairsFileError(f"{prefix}'same' must be 1/0, true/false, yes/no or same/different, got {value!r}")


def read_pairs(path: str | os.PathLike[str]) -> list[PairRow]:
    """Every row of a pairs CSV, in file order.

    Raises :class:`PairsFileError` for an unreadable file, missing columns, an empty image name,
    a ``same`` value outside the rule, or a file without rows; each message names the file (and
    the line, counting the header as line 1).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise PairsFileError(f"{path}: expected columns image_a,image_b,same[,source]; found {reader.fieldnames} (missing {', '.join(missing)})")
            reader.fieldnames = columns
            rows = [_row(raw, f"{path}:{line}") for line, raw in enumerate(reader, start=2)]
    except OSError as exc:
        raise PairsFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PairsFileError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    if not rows:
        raise PairsFileError(f"{path}: no pairs (only a header)")
    return rows


def _row(raw: dict[str, str | None], where: str) -> PairRow:
    a, b = (raw.get("image_a") or "").strip(), (raw.get("image_b") or "").strip()
    if not a or not b:
        raise PairsFileError(f"{where}: image_a and image_b must both name a picture, got {a!r} and {b!r}")
    return PairRow(a, b, parse_same(raw.get("same"), where), (raw.get("source") or "").strip())

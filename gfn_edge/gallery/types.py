"""The gallery's value types and errors, shared by the facade, the index and every store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import GalleryError


class GalleryValueError(GalleryError, ValueError):
    """An argument the gallery cannot store or search with (bad name, NaN, wrong size)."""


class UnknownIdentityError(GalleryError, KeyError):
    """An identity that is not enrolled."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Match(NamedTuple):
    """One ranked search result.

    ``score`` is the cosine similarity in [-1, 1]; ``index`` is which of the identity's templates
    matched best, as a position in ``Gallery.embeddings(identity)``.
    """

    identity: str
    score: float
    index: int


@dataclass
class EnrollReport:
    """What ``enroll_images`` stored, and which images it could not use.

    ``skipped``: images without a face; ``rejected``: image index -> the quality gates its face
    failed (blur, pose, size...), when the analyzer measures them.
    """

    identity: str
    added: int
    total: int
    skipped: list[int] = field(default_factory=list)
    rejected: dict[int, list[str]] = field(default_factory=dict)

"""The in-memory search index: every intact template as one float32 matrix, and the ranking.

1:N search is one matrix product (queries x templates); an identity's score is the best (or the
mean) cosine over its templates. The index is rebuilt from ``GalleryStore.load`` and patched in
place after this process's own writes, so enrolling one person never reloads a large gallery.
"""

from __future__ import annotations

import math

import numpy as np

from .codec import DTYPE
from .store import LoadedTemplates
from .types import Match

AGGREGATES = ("max", "mean")


class TemplateIndex:
    """All templates as one float32 matrix (with spare rows for appends) and who owns each row."""

    def __init__(self, dim: int, capacity: int):
        self.vectors = np.empty((capacity, dim), DTYPE)
        self.owner = np.empty(capacity, np.int32)  # slot of the identity owning each row
        self.pos = np.empty(capacity, np.int32)  # the row's position among its identity's templates
        self.n = 0
        self.names: list[str | None] = []  # slot -> name; None once removed
        self.counts: list[int] = []  # slot -> templates in the matrix
        self.slots: dict[str, int] = {}
        self.generation: int | None = None  # the store generation this index reflects

    @classmethod
    def from_loaded(cls, loaded: LoadedTemplates, dim: int) -> TemplateIndex:
        n = len(loaded.owners)
        index = cls(dim, n + n // 16 + 64)  # a little room for enrolments
        for name in loaded.names:
            index.slot(name)
        index.vectors[:n] = loaded.vectors
        index.owner[:n] = loaded.owners
        index.n = n
        # position of each row among its identity's templates (rows are in enrolment order)
        owner = index.owner[:n]
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=len(index.names))
        starts = np.cumsum(counts) - counts
        index.pos[order] = np.arange(n) - np.repeat(starts, counts)
        index.counts = counts.tolist()
        index.generation = loaded.generation
        return index

    @property
    def nbytes(self) -> int:
        return self.vectors.nbytes + self.owner.nbytes + self.pos.nbytes

    def slot(self, name: str) -> int:
        slot = self.slots.get(name)
        if slot is None:
            slot = self.slots[name] = len(self.names)
            self.names.append(name)
            self.counts.append(0)
        return slot

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        cap = len(self.vectors)
        if need <= cap:
            return
        cap = max(need, cap + cap // 4 + 64)
        for attr in ("vectors", "owner", "pos"):
            old = getattr(self, attr)
            new = np.empty((cap,) + old.shape[1:], old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, attr, new)

    def append(self, name: str, vectors: np.ndarray) -> None:
        slot = self.slot(name)
        k = len(vectors)
        self._reserve(k)
        rows = slice(self.n, self.n + k)
        self.vectors[rows] = vectors
        self.owner[rows] = slot
        self.pos[rows] = np.arange(self.counts[slot], self.counts[slot] + k)
        self.counts[slot] += k
        self.n += k

    def drop(self, name: str) -> None:
        """Remove an identity's rows in place (chunked, so no second matrix is allocated)."""
        slot = self.slots.pop(name, None)
        if slot is None:
            return
        mine = self.owner[: self.n] == slot
        if mine.any():
            first = int(np.argmax(mine))  # rows before it stay where they are
            keep = first + np.flatnonzero(~mine[first:])
            step = 8192
            for start in range(0, len(keep), step):  # keep[j] >= first + j: never overwritten early
                src = keep[start : start + step]
                lo, hi = first + start, first + start + len(src)
                self.vectors[lo:hi] = self.vectors[src]
                self.owner[lo:hi] = self.owner[src]
                self.pos[lo:hi] = self.pos[src]
            self.n = first + len(keep)
        self.names[slot] = None
        self.counts[slot] = 0

    # --- ranking --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, threshold: float | None, aggregate: str) -> list[list[Match]]:
        """Rank identities for each of the (B, dim) unit ``queries``; at most ``k`` each, best first."""
        if self.n == 0:
            return [[] for _ in range(len(queries))]
        scores = queries @ self.vectors[: self.n].T  # (B, n): the 1:N search, one matrix product
        rank = self._rank_mean if aggregate == "mean" else self._rank_max
        return [rank(s, k, threshold) for s in scores]

    def _rank_mean(self, s: np.ndarray, k: int, threshold: float | None) -> list[Match]:
        counts = np.asarray(self.counts, np.float64)
        sums = np.bincount(self.owner[: self.n], weights=s, minlength=len(counts))
        per_identity = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
        order = np.argsort(-per_identity, kind="stable")[:k]
        out = []
        for slot in order:
            score = float(per_identity[slot])
            if not math.isfinite(score) or (threshold is not None and score < threshold):
                break
            rows = np.flatnonzero(self.owner[: self.n] == slot)
            row = rows[int(np.argmax(s[rows]))]
            out.append(Match(self.names[slot], min(max(score, -1.0), 1.0), int(self.pos[row])))
        return out

    def _rank_max(self, s: np.ndarray, k: int, threshold: float | None) -> list[Match]:
        # the top-k identities' best rows are among the top rows; widen until k distinct
        n = len(s)
        want = min(n, max(4 * k, 32))
        while True:
            cand = np.argpartition(s, n - want)[n - want :] if want < n else np.arange(n)
            cand = cand[np.argsort(-s[cand], kind="stable")]
            exhausted = want == n
            if threshold is not None:
                above = s[cand] >= threshold
                if not above.all():
                    cand, exhausted = cand[above], True
            _, first = np.unique(self.owner[cand], return_index=True)
            if len(first) >= k or exhausted:
                rows = cand[np.sort(first)[:k]]
                return [Match(self.names[self.owner[r]], min(max(float(s[r]), -1.0), 1.0), int(self.pos[r])) for r in rows]
            want = min(n, want * 4)


def decide(matches: list[Match], threshold: float, margin: float) -> Match | None:
    """The top match if it clears ``threshold`` and beats the runner-up by ``margin``, else None."""
    if not matches or not matches[0].score >= threshold:
        return None
    if margin > 0 and len(matches) > 1 and matches[0].score - matches[1].score < margin:
        return None
    return matches[0]

"""Gallery integrity (issue 14): a flipped bit anywhere in a gallery file never grants a stranger.

Every stored template carries a CRC-32 over its vector and its identity's name; the header
(signature, dim, schema version, threshold) carries one too. A damaged template is quarantined
(never searched) and reported by ``gfn-edge gallery check``; a damaged header is refused. The
byte-flip sweep below flips one bit at a time in a copy of a small real gallery file and opens
it the way the door does.
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gfn_edge import GalleryError, MissingDependencyError
from gfn_edge.cli import main as cli_main
from gfn_edge.gallery import Gallery, GalleryValueError, NewTemplates, open_store
from gfn_edge.gallery.sqlite_schema import PAGE_SIZE

SIG = "ghostfacenet-x:abcd1234"
HELPER = Path(__file__).parent / "helpers" / "gallery_writer.py"


def _writer():
    spec = importlib.util.spec_from_file_location("gallery_writer", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- the byte-flip sweep -------------------------------------------------------------------------
FLIP_DIM = 32  # small templates keep the file's used bytes (and so the sweep) short
THRESHOLD = 0.75


@pytest.fixture(scope="module")
def small_gallery(tmp_path_factory: pytest.TempPathFactory):
    """3 people x 2 templates with a calibrated threshold, closed (WAL checkpointed into the file)."""
    rng = np.random.default_rng(14)
    people = {name: unit(rng.standard_normal((2, FLIP_DIM))) for name in ("alice", "bob", "carol")}
    path = tmp_path_factory.mktemp("flip") / "gallery.db"
    with Gallery(path, signature=SIG, dim=FLIP_DIM) as g:
        g.enroll_many(people)
        g.enroll("alice", unit(rng.standard_normal(FLIP_DIM)), metadata={"badge": 17})
        g.set_threshold(THRESHOLD, target_far=0.001, details={"impostor_pairs": 5000})
    people["alice"] = np.concatenate([people["alice"], Gallery(path, readonly=True).embeddings("alice")[2:]])
    strangers = unit(rng.standard_normal((40, FLIP_DIM)))
    strangers = np.concatenate([strangers, -np.concatenate(list(people.values()))])  # the farthest faces too
    return path, people, strangers


def _page_gaps(data: bytes) -> list[range]:
    """The unallocated gap of each b-tree page (between the cell pointers and the cell content)."""
    page = int.from_bytes(data[16:18], "big")
    page = 65536 if page == 1 else page
    gaps = []
    for start in range(0, len(data) - page + 1, page):
        header = start + (100 if start == 0 else 0)
        kind = data[header]
        if kind not in (2, 5, 10, 13):
            continue  # overflow or freelist page: every byte counts
        cells = int.from_bytes(data[header + 3 : header + 5], "big")
        content = int.from_bytes(data[header + 5 : header + 7], "big") or 65536
        first_free = header + (8 if kind in (10, 13) else 12) + 2 * cells
        gaps.append(range(first_free, start + content))
    return gaps


def _positions(data: bytes, gap_stride: int) -> tuple[list[int], int]:
    """Every byte position outside the page gaps, and every ``gap_stride``-th inside them."""
    in_gap = np.zeros(len(data), bool)
    for gap in _page_gaps(data):
        in_gap[gap.start : gap.stop] = True
    positions = np.flatnonzero(~in_gap).tolist()
    gap_positions = np.flatnonzero(in_gap)
    sampled = gap_positions[::gap_stride].tolist()
    return sorted(positions + sampled), len(gap_positions)


def _outcome(path: Path, people: dict[str, np.ndarray], queries: np.ndarray, owners: list[str]) -> str:
    """Open as the door does and decide: refused, quarantined or unchanged; assert no wrong grant.

    ``queries`` are strangers (owner "") and every enrolled template (owner its name).
    """
    try:
        with Gallery(path, signature=SIG, dim=FLIP_DIM) as g:
            threshold = g.threshold
            assert threshold is not None and threshold >= -1.0
            assert g.best(queries[0]) is None, "a stranger was granted"  # the door's call, once
            for owner, found in zip(owners, g.search(queries, k=1)):  # the same decision for all at once
                if found and found[0].score >= threshold:
                    assert owner, f"a stranger was granted as {found[0].identity} (score {found[0].score:.3f})"
                    assert found[0].identity == owner, f"{owner}'s face granted as {found[0].identity}"
            if g.damaged:
                return "quarantined"
            # nothing detected: then what decisions rest on must be exactly as enrolled
            assert threshold == THRESHOLD, f"undetected threshold change to {threshold}"
            mine = [(o, q) for o, q in zip(owners, queries) if o]
            for (owner, _), found in zip(mine, g.search(np.stack([q for _, q in mine]), k=1)):
                assert found[0].identity == owner and found[0].score > 1 - 1e-6, f"undetected change: {found}"
            return "no effect on decisions"
    except GalleryError:
        return "refused"


@pytest.fixture
def scratch(tmp_path: Path):
    """A folder in memory when the system has one: thousands of opens, no disk syncs."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="gfn-flip-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _sweep(small_gallery, tmp_path: Path, gap_stride: int) -> collections.Counter:
    src, people, strangers = small_gallery
    queries = np.concatenate([strangers] + list(people.values()))
    owners = [""] * len(strangers) + [name for name, vecs in people.items() for _ in vecs]
    data = src.read_bytes()
    assert int.from_bytes(data[16:18], "big") == PAGE_SIZE  # the page size galleries really use
    assert _outcome(src, people, queries, owners) == "no effect on decisions"
    with Gallery(src, readonly=True) as g:
        assert all(g.best(v[0]).identity == n for n, v in people.items())
    positions, gap_bytes = _positions(data, gap_stride)
    path = tmp_path / "gallery.db"
    outcomes: collections.Counter = collections.Counter()
    logging.disable(logging.CRITICAL)  # thousands of expected quarantine lines
    try:
        for pos in positions:
            flipped = bytearray(data)
            flipped[pos] ^= 1 << (pos % 8)
            for extra in ("-wal", "-shm"):
                Path(str(path) + extra).unlink(missing_ok=True)
            path.write_bytes(bytes(flipped))
            try:
                outcomes[_outcome(path, people, queries, owners)] += 1
            except AssertionError as exc:
                raise AssertionError(f"bit {pos % 8} of byte {pos} (page {pos // PAGE_SIZE}): {exc}") from None
    finally:
        logging.disable(logging.NOTSET)
    print(f"\n{len(data)} bytes, {len(positions)} positions flipped ({gap_bytes} unallocated, every {gap_stride}th of those): {dict(outcomes)}")
    assert sum(outcomes.values()) == len(positions)
    assert outcomes["refused"] > 0 and outcomes["quarantined"] > 0
    return outcomes


def test_a_bit_flip_never_grants_a_stranger(small_gallery, scratch: Path):
    """Every byte SQLite reads (headers, cell pointers, cells) and a sample of unallocated space."""
    _sweep(small_gallery, scratch, gap_stride=211)


@pytest.mark.slow
def test_a_bit_flip_at_every_byte_position_never_grants_a_stranger(small_gallery, scratch: Path):
    """The same over every byte of the file, unallocated space included (~230k opens)."""
    _sweep(small_gallery, scratch, gap_stride=1)

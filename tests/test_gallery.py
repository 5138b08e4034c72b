"""Gallery: enrolment round trips, ranking and thresholds, refusing other models' and damaged
files (untouched), surviving SIGKILL mid-write, other processes' writes, 1:N search at 100k.

Every test of ``Gallery`` semantics takes its locations from the ``gallery_store`` fixture
(tests/conftest.py), parametrised over ``sqlite`` and ``postgres`` (a real PostgreSQL +
pgvector server, each test in a schema of its own), so the same assertions hold for both stores.
The few tests about SQLite files themselves (damaged pages, WAL, folders) take ``tmp_path`` and
say why in their docstring.

Identities are synthetic 512-d clusters (no model needed): templates and probes are a unit
centre plus noise, giving genuine cosines around 0.6-0.8 and impostors around 0.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import hang_guard, load_script

from gfn_edge import GalleryError, GfnEdgeError
from gfn_edge.gallery import (
    EnrollReport,
    Gallery,
    GalleryValueError,
    Match,
    UnknownIdentityError,
    normalize_embeddings,
)

pytestmark = pytest.mark.device

SIG = "ghostfacenet-x:abcd1234"
OTHER_SIG = "ghostfacenet-y:ffff0000"
DIM = 512
HELPER = Path(__file__).parent / "helpers" / "gallery_writer.py"


def _writer_module():
    return load_script(HELPER, "gallery_writer")


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_people(n: int, templates: int = 3, seed: int = 0, noise: float = 0.04) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n, DIM)))
    people = {f"person-{i:03d}": unit(centres[i] + noise * rng.standard_normal((templates, DIM))) for i in range(n)}
    return centres, people


def probe(centre: np.ndarray, rng: np.random.Generator, noise: float = 0.04) -> np.ndarray:
    return unit(centre + noise * rng.standard_normal(DIM))


def brute_force(people: dict[str, np.ndarray], query: np.ndarray, aggregate: str = "max") -> list[tuple[str, float, int]]:
    """Every identity as (name, score, best template), best first, computed in float64."""
    q = query.astype(np.float64) / np.linalg.norm(query.astype(np.float64))
    out = []
    for name, vecs in people.items():
        s = vecs.astype(np.float64) @ q
        out.append((name, float(s.max() if aggregate == "max" else s.mean()), int(np.argmax(s))))
    return sorted(out, key=lambda r: -r[1])


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_matches(got: list[Match], expected: list[tuple[str, float, int]], tol: float = 1e-5) -> None:
    assert [m.identity for m in got] == [e[0] for e in expected]
    np.testing.assert_allclose([m.score for m in got], [e[1] for e in expected], atol=tol)
    assert [m.index for m in got] == [e[2] for e in expected]


@pytest.fixture
def gallery(gallery_store):
    """An empty gallery on each store in turn."""
    with Gallery(gallery_store.new(), signature=SIG, dim=DIM) as g:
        yield g


def fill_sample(location) -> dict[str, np.ndarray]:
    """60 people x 4 templates enrolled at ``location``, closed afterwards; returns them."""
    _, people = make_people(60, templates=4, seed=7)
    with Gallery(location, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
    return people


@pytest.fixture
def sample(gallery_store) -> tuple[object, dict[str, np.ndarray]]:
    """(location, people) of a closed 240-template gallery on each store in turn."""
    location = gallery_store.new()
    return location, fill_sample(location)


@pytest.fixture(scope="module")
def sample_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """A closed gallery *file* of 60 people x 4 templates, for the SQLite file-damage tests."""
    path = tmp_path_factory.mktemp("sample") / "gallery.db"
    return path, fill_sample(path)


# --- round trips ------------------------------------------------------------------------------
def test_enroll_list_embeddings_remove_round_trip(gallery_store):
    _, people = make_people(20, templates=3)
    path = gallery_store.new()
    with Gallery(path, signature=SIG, dim=DIM) as g:
        for name, vecs in people.items():
            assert g.enroll(name, vecs) == 3
        assert g.identities() == sorted(people)
        assert g.count() == len(g) == 20
        assert g.num_templates == 60
        assert "person-000" in g and "nobody" not in g and 42 not in g
        for name, vecs in people.items():  # unit float32 input is stored bit-exact
            np.testing.assert_array_equal(g.embeddings(name), vecs)
        assert g.metadata("person-000") == {}
        assert g.signature == SIG and g.dim == DIM

    with Gallery(path, signature=SIG, dim=DIM) as g:  # persisted
        assert g.identities() == sorted(people)
        for name, vecs in people.items():
            np.testing.assert_array_equal(g.embeddings(name), vecs)
        assert g.remove("person-000") == 3
        assert "person-000" not in g and g.count() == 19 and g.num_templates == 57
        assert g.remove("person-000") == 0
        with pytest.raises(UnknownIdentityError) as err:
            g.embeddings("person-000")
        assert isinstance(err.value, KeyError) and isinstance(err.value, GfnEdgeError)
        assert "person-000" in str(err.value)
        matches = g.search(people["person-000"][0], k=19)
        assert "person-000" not in [m.identity for m in matches]

    with Gallery(path, signature=SIG) as g:
        assert "person-000" not in g and g.count() == 19


def test_search_ranks_identities_by_best_template(gallery: Gallery):
    centres, people = make_people(30, templates=4, seed=1)
    gallery.enroll_many(people)
    rng = np.random.default_rng(2)
    for i, name in enumerate(people):
        q = probe(centres[i], rng)
        got = gallery.search(q, k=5)
        assert got[0].identity == name and got[0].score > 0.5
        assert len({m.identity for m in got}) == 5
        assert all(a.score >= b.score for a, b in zip(got, got[1:]))
        assert_matches(got, brute_force(people, q)[:5])
        best = got[0]  # index names the template that matched best
        np.testing.assert_allclose(float(gallery.embeddings(name)[best.index] @ q), best.score, atol=1e-5)
    assert len(gallery.search(centres[0], k=100)) == 30  # k beyond the gallery: everyone, once


def test_batch_search_equals_single_queries(gallery: Gallery):
    centres, people = make_people(12, templates=2, seed=3)
    gallery.enroll_many(people)
    rng = np.random.default_rng(4)
    batch = np.stack([probe(c, rng) for c in centres[:5]] + [unit(rng.standard_normal(DIM))])
    many = gallery.search(batch, k=3)
    assert len(many) == 6
    for q, got in zip(batch, many):
        single = gallery.search(q, k=3)
        assert [m.identity for m in got] == [m.identity for m in single]
        np.testing.assert_allclose([m.score for m in got], [m.score for m in single], atol=1e-6)
    assert gallery.search(np.zeros((0, DIM), np.float32)) == []


def test_empty_gallery_searches_to_nothing(gallery: Gallery):
    q = unit(np.ones(DIM))
    assert gallery.search(q) == []
    assert gallery.search(np.stack([q, q])) == [[], []]
    assert gallery.best(q, threshold=0.0) is None


def test_threshold_and_best(gallery_store):
    centres, people = make_people(25, templates=3, seed=5)
    rng = np.random.default_rng(6)
    path = gallery_store.new()
    with Gallery(path, signature=SIG, dim=DIM) as g:
        g.enroll_many(people)
        stranger = unit(rng.standard_normal(DIM))
        assert g.search(stranger, k=5, threshold=0.3) == []
        assert g.best(stranger, threshold=0.3) is None
        genuine = probe(centres[3], rng)
        m = g.best(genuine, threshold=0.3)
        assert m is not None and m.identity == "person-003" and m.score >= 0.3

        # a threshold in the middle of the ranking keeps exactly those at or above it
        ranked = brute_force(people, stranger)
        t = (ranked[3][1] + ranked[4][1]) / 2
        got = g.search(stranger, k=10, threshold=t)
        assert_matches(got, ranked[:4])

        with pytest.raises(GalleryValueError, match="threshold"):
            g.best(genuine)
        assert g.threshold is None
        g.threshold = 0.3
        assert g.best(genuine).identity == "person-003"
        with pytest.raises(GalleryValueError):
            g.threshold = 2.0

        # margin: a near-twin enrolled makes the match ambiguous
        g.enroll("twin-of-003", unit(centres[3] + 0.04 * rng.standard_normal((2, DIM))))
        assert g.best(genuine) is not None
        assert g.best(genuine, margin=0.2) is None
    with Gallery(path, signature=SIG) as g:
        assert g.threshold == pytest.approx(0.3)


def test_max_and_mean_aggregation(gallery: Gallery):
    basis = np.linalg.qr(np.random.default_rng(8).standard_normal((DIM, 4)))[0].T.astype(np.float32)
    p, u1, u2, u3 = basis
    gallery.enroll("A", np.stack([p, u3]))  # one exact pose, one unrelated: max 1.0, mean 0.5
    gallery.enroll("B", unit(np.stack([0.8 * p + 0.6 * u1, 0.9 * p + 0.436 * u2])))  # max ~0.9, mean ~0.85
    by_max = gallery.search(p, k=2)
    assert [m.identity for m in by_max] == ["A", "B"]
    assert by_max[0].score == pytest.approx(1.0, abs=1e-6) and by_max[0].index == 0
    by_mean = gallery.search(p, k=2, aggregate="mean")
    assert [m.identity for m in by_mean] == ["B", "A"]
    assert by_mean[1].score == pytest.approx(0.5, abs=1e-5)
    assert by_mean[0].index == 1  # still the best single template
    with pytest.raises(GalleryValueError):
        gallery.search(p, aggregate="median")


def test_replace_append_and_metadata(gallery: Gallery):
    rng = np.random.default_rng(9)
    v1, v2, v3 = (unit(rng.standard_normal((n, DIM))) for n in (2, 3, 1))
    gallery.enroll("other", unit(rng.standard_normal((2, DIM))))
    assert gallery.enroll("alice", v1, metadata={"badge": 7}) == 2
    assert gallery.search(v1[1], k=1)[0] == Match("alice", pytest.approx(1.0, abs=1e-6), 1)  # loads the matrix
    assert gallery.enroll("alice", v2) == 5  # appended
    np.testing.assert_array_equal(gallery.embeddings("alice"), np.concatenate([v1, v2]))
    assert gallery.search(v2[2], k=1)[0].index == 4  # the cached matrix followed the append
    assert gallery.metadata("alice") == {"badge": 7}  # kept when not given
    assert gallery.enroll("alice", v3, replace=True, metadata={"badge": 8}) == 1
    np.testing.assert_array_equal(gallery.embeddings("alice"), v3)
    assert gallery.metadata("alice") == {"badge": 8}
    assert gallery.num_templates == 3
    top = gallery.search(v3[0], k=1)[0]
    assert top.identity == "alice" and top.index == 0 and top.score == pytest.approx(1.0, abs=1e-6)
    old = [m for m in gallery.search(v1[0], k=2) if m.identity == "alice"][0]
    assert old.score < 0.5  # the replaced templates are gone from the matrix too
    with pytest.raises(GalleryValueError, match="JSON"):
        gallery.enroll("bob", v1, metadata={"when": object()})
    assert "bob" not in gallery


def test_enroll_many_is_all_or_nothing(gallery: Gallery):
    rng = np.random.default_rng(10)
    good = unit(rng.standard_normal((2, DIM)))
    bad = good.copy()
    bad[1, 5] = np.nan
    with pytest.raises(GalleryValueError, match="NaN"):
        gallery.enroll_many({"a": good, "b": bad})
    assert gallery.count() == 0
    assert gallery.enroll_many([("a", good), ("b", good[:1]), ("a", good[1:])]) == 4
    assert gallery.embeddings("a").shape == (3, DIM)
    assert gallery.enroll_many({}) == 0


@pytest.mark.parametrize(
    "name, vectors, message",
    [
        ("", "ok", "empty"),
        ("   ", "ok", "empty"),
        (" bob", "ok", "whitespace"),
        (5, "ok", "string"),
        ("a\nb", "ok", "control"),
        ("x" * 300, "ok", "at most"),
        ("bob", "nan", "NaN"),
        ("bob", "inf", "NaN or Inf"),
        ("bob", "huge", "overflow"),
        ("bob", "dim", "512"),
        ("bob", "zero", "zero"),
        ("bob", "empty", "n >= 1"),
        ("bob", "3d", "shape"),
        ("bob", "text", "real numbers"),
    ],
)
def test_rejects_bad_input_and_stores_nothing(gallery: Gallery, name, vectors, message):
    v = unit(np.random.default_rng(11).standard_normal((2, DIM)))
    bad = {
        "ok": v,
        "nan": np.where(np.arange(DIM) == 3, np.nan, v),
        "inf": np.where(np.arange(DIM) == 3, np.inf, v),
        "huge": v.astype(np.float64) * 1e300,
        "dim": v[:, :128],
        "zero": np.zeros((1, DIM)),
        "empty": np.zeros((0, DIM)),
        "3d": v[None],
        "text": np.array(["a"] * DIM),
    }[vectors]
    with pytest.raises(GalleryValueError, match=message) as err:
        gallery.enroll(name, bad)
    assert isinstance(err.value, ValueError) and isinstance(err.value, GalleryError)
    assert gallery.count() == 0 and gallery.num_templates == 0


def test_rejects_bad_queries(gallery: Gallery):
    v = unit(np.random.default_rng(12).standard_normal(DIM))
    gallery.enroll("a", v)
    with pytest.raises(GalleryValueError, match="NaN"):
        gallery.search(np.full(DIM, np.nan))
    with pytest.raises(GalleryValueError, match="512"):
        gallery.search(v[:128])
    with pytest.raises(GalleryValueError, match="k must"):
        gallery.search(v, k=0)
    with pytest.raises(GalleryValueError, match="one embedding"):
        gallery.best(np.stack([v, v]), threshold=0.3)


def test_normalises_defensively_without_touching_input(gallery: Gallery):
    rng = np.random.default_rng(13)
    raw = rng.standard_normal((3, DIM)) * 7.5  # float64, far from unit length
    before = raw.copy()
    gallery.enroll("a", raw)
    np.testing.assert_array_equal(raw, before)
    stored = gallery.embeddings("a")
    assert stored.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(stored.astype(np.float64), axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(stored, unit(raw), atol=1e-7)
    q = rng.standard_normal(DIM)
    a, b = gallery.search(q, k=1)[0], gallery.search(q * 1000, k=1)[0]
    assert a.identity == b.identity and a.score == pytest.approx(b.score, abs=1e-6)
    np.testing.assert_array_equal(normalize_embeddings(stored), stored)  # idempotent: bit-exact


# --- refusing files -----------------------------------------------------------------------------
def test_refuses_a_gallery_of_another_model(sample, gallery_store):
    path, people = sample
    before = gallery_store.snapshot(path)
    with pytest.raises(GalleryError) as err:
        Gallery(path, signature=OTHER_SIG, dim=DIM)
    text = str(err.value)
    assert SIG in text and OTHER_SIG in text and "re-enrol" in text.lower() and str(path) in text
    with pytest.raises(GalleryError, match="128-d"):
        Gallery(path, signature=SIG, dim=128)
    assert gallery_store.snapshot(path) == before  # refused, untouched
    with Gallery(path) as g:  # no signature given: opens, says which model it is for
        assert g.signature == SIG and g.dim == DIM and g.count() == len(people)


def test_creating_needs_signature_and_dim(gallery_store):
    path = gallery_store.new()
    with pytest.raises(GalleryError, match="signature"):
        Gallery(path)
    with pytest.raises(GalleryError, match="dim"):
        Gallery(path, signature=SIG)
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery(path, signature=SIG, dim=DIM, create=False)
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery(path, signature=SIG, dim=DIM, readonly=True)
    with Gallery(path, signature=SIG, dim=DIM) as g:
        assert g.count() == 0 and g.schema_version == 2  # schema 2: template checksums (issue 14)
    with Gallery(path, signature=SIG, dim=DIM, create=False, readonly=True) as g:  # it exists now
        assert g.count() == 0 and g.signature == SIG


def test_creating_a_gallery_file_leaves_nothing_half_made(tmp_path: Path):
    """SQLite only: what creating a *file* leaves in its folder (a server has no folder)."""
    path = tmp_path / "new.db"
    for kwargs in ({}, {"signature": SIG}, {"signature": SIG, "dim": DIM, "create": False}, {"signature": SIG, "dim": DIM, "readonly": True}):
        with pytest.raises(GalleryError):
            Gallery(path, **kwargs)
    with pytest.raises(GalleryError, match="folder"):
        Gallery(tmp_path / "missing" / "g.db", signature=SIG, dim=DIM)
    assert list(tmp_path.iterdir()) == []  # nothing half-made left behind
    with Gallery(path, signature=SIG, dim=DIM) as g:
        assert g.count() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.db"]  # temp file linked and gone
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _damage(kind: str, data: bytes) -> bytes:
    rng = np.random.default_rng(14)
    page = int.from_bytes(data[16:18], "big") or 65536
    if kind == "garbage":
        return rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "header-only":
        return data[:50]
    if kind == "truncated-half":
        return data[: len(data) // 2]
    if kind == "truncated-last-page":
        return data[: len(data) - page]
    if kind == "truncated-mid-page":
        return data[: 3 * page + 1234]
    if kind == "overwritten-page":
        out = bytearray(data)
        out[3 * page : 4 * page] = rng.integers(0, 256, page, dtype=np.uint8).tobytes()
        return bytes(out)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, says",
    [
        ("garbage", "not an SQLite database"),
        ("empty", "empty (0 bytes)"),
        ("header-only", "truncated"),
        ("truncated-half", "damaged"),
        ("truncated-last-page", "damaged"),
        ("truncated-mid-page", "damaged"),
        ("overwritten-page", "damaged"),
    ],
)
@pytest.mark.parametrize("check", ["quick", "full"])
def test_refuses_damaged_file_and_leaves_it_untouched(sample_gallery, tmp_path: Path, kind: str, says: str, check: str):
    """SQLite only: damage to the file's pages (a server's storage is the server's to check)."""
    src, _ = sample_gallery
    path = tmp_path / "gallery.db"
    path.write_bytes(_damage(kind, src.read_bytes()))
    before = folder_bytes(tmp_path)
    with pytest.raises(GalleryError) as err:
        Gallery(path, signature=SIG, dim=DIM, check=check)
    assert str(path) in str(err.value) and says in str(err.value)
    assert folder_bytes(tmp_path) == before  # not repaired, not overwritten, no stray files


def test_refuses_an_sqlite_file_that_is_not_a_gallery(tmp_path: Path):
    """SQLite only: another application's database file at the gallery's path."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users(name TEXT)")
        conn.execute("INSERT INTO users VALUES ('root')")
    conn.close()
    before = folder_bytes(tmp_path)
    with pytest.raises(GalleryError, match="not a gfn-edge gallery"):
        Gallery(path, signature=SIG, dim=DIM)
    assert folder_bytes(tmp_path) == before


def test_readonly_searches_but_never_writes(sample):
    path, people = sample
    name, vecs = next(iter(people.items()))
    with Gallery(path, signature=SIG, readonly=True) as g:
        assert g.search(vecs[0], k=1)[0].identity == name
        for write in (lambda: g.enroll("x", vecs), lambda: g.remove(name), lambda: setattr(g, "threshold", 0.3)):
            with pytest.raises(GalleryError, match="read-only"):
                write()
        assert name in g
    with pytest.raises(GalleryError, match="closed"):
        g.count()


# --- processes, threads, crashes ---------------------------------------------------------------
def _run_helper(*args: str) -> str:
    done = subprocess.run([sys.executable, str(HELPER), *args], capture_output=True, text=True, timeout=hang_guard(60))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_another_process_enrolment_is_seen(sample):
    path, people = sample
    writer = _writer_module()
    carol = writer.vectors_for("carol", 0)
    with Gallery(path, signature=SIG, dim=DIM) as g:
        assert g.search(carol[0], k=1)[0].identity != "carol"  # matrix cached now
        _run_helper("enroll", str(path), SIG, "carol", "0")
        top = g.search(carol[0], k=1)[0]
        assert top.identity == "carol" and top.score == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_array_equal(g.embeddings("carol"), carol)
        first = next(iter(people))
        assert _run_helper("remove", str(path), SIG, first).strip() == "4"
        assert first not in g
        assert first not in [m.identity for m in g.search(people[first][0], k=60)]


def test_two_handles_stay_coherent_through_random_writes(gallery_store):
    """Each handle patches its own matrix after its writes and reloads after the other's."""
    path = gallery_store.new()
    rng = np.random.default_rng(15)
    pick = random.Random(15)
    truth: dict[str, np.ndarray] = {}
    queries = unit(rng.standard_normal((4, DIM)))
    with Gallery(path, signature=SIG, dim=DIM) as a, Gallery(path, signature=SIG, dim=DIM) as b:
        for step in range(60):
            g = pick.choice([a, b])
            op = pick.choice(["new", "new", "append", "replace", "remove"]) if truth else "new"
            name = f"id{step}" if op == "new" else pick.choice(sorted(truth))
            vecs = unit(rng.standard_normal((pick.randint(1, 4), DIM)))
            if op == "remove":
                assert g.remove(name) == len(truth.pop(name))
            else:
                g.enroll(name, vecs, replace=op == "replace")
                truth[name] = vecs if op in ("new", "replace") else np.concatenate([truth[name], vecs])
            for h in (a, b):
                for q in queries:
                    assert_matches(h.search(q, k=4), brute_force(truth, q)[:4])
        assert sorted(truth) == a.identities() == b.identities()


def test_threads_share_a_gallery(gallery_store):
    path = gallery_store.new()
    shared = Gallery(path, signature=SIG, dim=DIM)
    errors: list[BaseException] = []
    written: dict[str, np.ndarray] = {}

    def work(worker: int, own_handle: bool) -> None:
        try:
            g = Gallery(path, signature=SIG, dim=DIM) if own_handle else shared
            rng = np.random.default_rng(100 + worker)
            for i in range(10):
                vecs = unit(rng.standard_normal((2, DIM)))
                g.enroll(f"w{worker}-{i}", vecs)
                written[f"w{worker}-{i}"] = vecs
                assert g.search(vecs[0], k=1)[0].identity == f"w{worker}-{i}"
            if own_handle:
                g.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, w % 2 == 0)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert shared.count() == 40
    for name, vecs in written.items():
        np.testing.assert_array_equal(shared.embeddings(name), vecs)
    shared.close()


def test_a_writer_holding_the_lock_times_out_cleanly(gallery_store):
    path = gallery_store.new()
    v = unit(np.random.default_rng(21).standard_normal((1, DIM)))
    with Gallery(path, signature=SIG, dim=DIM, timeout=0.2) as g:
        with gallery_store.writer_holding_the_lock(path):  # another process mid-enrolment
            t0 = time.monotonic()
            with pytest.raises(GalleryError, match="locked"):
                g.enroll("alice", v)
            assert time.monotonic() - t0 < 5
            assert g.search(v[0]) == []  # readers are not blocked
        assert "alice" not in g
        assert g.enroll("alice", v) == 1


def _read_committed(proc: subprocess.Popen, lines: list[str], want: int, deadline: float) -> None:
    while len(lines) < want:
        if time.monotonic() > deadline:
            raise AssertionError("the writer process stalled")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"the writer process died: {proc.stderr.read()}")
        if line.endswith("\n") and line.strip() != "ready":
            lines.append(line.strip())


def test_survives_sigkill_mid_enrolment(gallery_store):
    """Kill a writer repeatedly mid-enrolment; everything it reported as done must be intact."""
    path = gallery_store.new()
    writer = _writer_module()
    pick = random.Random(16)
    printed: dict[str, int] = {}  # name -> latest version the writer reported committed
    start, rounds = 0, 6
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), "loop", str(path), SIG, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        try:
            _read_committed(proc, lines, pick.randint(3, 12), time.monotonic() + hang_guard(60))
            time.sleep(pick.random() * 0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=hang_guard(30))
        assert proc.returncode == -signal.SIGKILL
        lines += [ln.strip() for ln in proc.stdout.read().splitlines(keepends=True) if ln.endswith("\n")]
        proc.stdout.close()
        proc.stderr.close()
        last = start
        for line in lines:
            name, version = line.split()
            printed[name] = int(version)
            last = max(last, int(name[len("person") :]))
        start = last + 2  # one more enrolment may have committed unreported; never reuse its name

    if gallery_store.kind == "sqlite":  # the file's own structure too (a server checks its own)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    with Gallery(path, signature=SIG, dim=DIM, check="full") as g:
        present = set(g.identities())
        assert set(printed) <= present
        unreported = 0
        for name in present:
            stored = g.embeddings(name)
            known = printed.get(name, -1)
            versions = [v for v in (known, known + 1) if v >= 0]
            same = [v for v in versions if np.array_equal(stored, writer.vectors_for(name, v))]
            assert same, f"{name}: stored templates are not exactly one enrolment's (versions {versions})"
            unreported += same[0] != known
        assert unreported <= rounds  # at most the one in flight at each kill
        q = writer.vectors_for(sorted(printed)[0], printed[sorted(printed)[0]])[0]
        assert g.search(q, k=1)[0].identity == sorted(printed)[0]
        g.enroll("after-the-crashes", writer.vectors_for("after", 0))  # still writable


def test_killed_inside_a_transaction_leaves_earlier_identities(sample_gallery, tmp_path: Path):
    """SQLite only: the writer dies with its uncommitted pages already in the WAL file (the
    server's counterpart, a client killed mid-transaction, is the SIGKILL test above)."""
    src, people = sample_gallery
    path = tmp_path / "gallery.db"
    shutil.copy(src, path)
    done = subprocess.run([sys.executable, str(HELPER), "die-in-transaction", str(path), SIG, "doomed"], capture_output=True, text=True, timeout=hang_guard(60))
    assert done.returncode == -signal.SIGKILL, done.stderr
    wal_at_death = int(done.stdout.split()[2])
    assert wal_at_death > 200 * DIM * 4  # the 200 templates' pages were in the WAL, uncommitted
    with Gallery(path, signature=SIG, dim=DIM, check="full") as g:
        assert "doomed" not in g
        assert g.identities() == sorted(people) and g.num_templates == 240
        for name, vecs in people.items():
            np.testing.assert_array_equal(g.embeddings(name), vecs)


# --- backup, export, enrolment from images ---------------------------------------------------
def test_backup_and_npz_round_trip(sample, gallery_store, tmp_path: Path):
    src, people = sample
    with Gallery(src, signature=SIG) as g:  # a backup is a portable SQLite file from either store
        dest = g.backup(tmp_path / "backup.db")
        with pytest.raises(GalleryError, match="exists"):
            g.backup(dest)
        npz = g.export_npz(tmp_path / "gallery.npz")
    with Gallery(dest, signature=SIG, dim=DIM, check="full") as b:
        assert b.identities() == sorted(people)
        for name, vecs in people.items():
            np.testing.assert_array_equal(b.embeddings(name), vecs)
    with Gallery(gallery_store.new(), signature=SIG, dim=DIM) as c:
        assert c.import_npz(npz) == 240
        for name, vecs in people.items():
            np.testing.assert_array_equal(c.embeddings(name), vecs)
    with Gallery(gallery_store.new(), signature=OTHER_SIG, dim=DIM) as d:
        with pytest.raises(GalleryError, match=SIG):
            d.import_npz(npz)
        assert d.count() == 0


class _FakeAnalyzer:
    """Faces per image from a lookup: image i -> list of (box, embedding)."""

    signature = SIG

    def __init__(self, faces: dict[int, list[tuple]]):
        self.faces = faces

    def analyze(self, image: np.ndarray) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(box=np.asarray(b, np.float32), embedding=e, passed=not rest, rejected_reasons=list(rest))
            for b, e, *rest in self.faces[int(image[0, 0, 0])]
        ]


def _image(i: int) -> np.ndarray:
    img = np.zeros((8, 8, 3), np.uint8)
    img[0, 0, 0] = i
    return img


def test_enroll_images_with_an_analyzer(gallery: Gallery):
    e = unit(np.random.default_rng(17).standard_normal((4, DIM)))
    analyzer = _FakeAnalyzer(
        {
            0: [([0, 0, 50, 50], e[0])],
            1: [],  # no face
            2: [([0, 0, 10, 10], e[1]), ([5, 5, 105, 105], e[2])],  # the larger one is enrolled
            3: [([0, 0, 90, 90], e[3], "blur")],  # fails a quality gate
        }
    )
    report = gallery.enroll_images("alice", [_image(0), _image(1), _image(2), _image(3)], analyzer=analyzer)
    assert report == EnrollReport("alice", added=2, total=2, skipped=[1], rejected={3: ["blur"]})
    np.testing.assert_array_equal(gallery.embeddings("alice"), np.stack([e[0], e[2]]))
    # the analyzer may come as the positional recogniser too
    assert gallery.enroll_images("bob", [_image(0)], analyzer).total == 1
    with pytest.raises(GalleryValueError, match="no usable face"):
        gallery.enroll_images("carol", [_image(1), _image(3)], analyzer=analyzer)
    assert "carol" not in gallery
    assert gallery.enroll_images("carol", [_image(3)], analyzer=analyzer, require_quality=False).added == 1
    analyzer.signature = OTHER_SIG
    with pytest.raises(GalleryError, match=OTHER_SIG):
        gallery.enroll_images("dave", [_image(0)], analyzer=analyzer)
    assert "dave" not in gallery


def test_enroll_images_takes_the_sdk_face_type(gallery: Gallery):
    analyzer_module = pytest.importorskip("gfn_edge.analyzer")
    e = unit(np.random.default_rng(20).standard_normal((2, DIM)))

    def face(size: float, embedding: np.ndarray, reasons: list[str]):
        return analyzer_module.Face(
            box=np.array([0, 0, size, size], np.float32),
            score=0.9,
            landmarks=np.zeros((5, 2), np.float32),
            embedding=embedding,
            rejected_reasons=reasons,
        )

    analyzer = SimpleNamespace(
        signature=SIG, analyze=lambda image: [face(40, e[0], []), face(120, e[1], [])] if image[0, 0, 0] == 0 else [face(90, e[0], ["pose"])]
    )
    report = gallery.enroll_images("frank", [_image(0), _image(1)], analyzer=analyzer)
    assert report.added == 1 and report.rejected == {1: ["pose"]}
    np.testing.assert_array_equal(gallery.embeddings("frank"), e[1:])


def test_enroll_images_with_an_embedder_of_crops(gallery: Gallery):
    vectors = unit(np.random.default_rng(18).standard_normal((3, DIM)))
    calls = []

    class Embedder:
        signature = SIG

        def embed(self, crops):
            calls.append(len(crops))
            return vectors[: len(crops)]

    report = gallery.enroll_images("erin", [np.zeros((112, 112, 3), np.uint8)] * 3, Embedder())
    assert calls == [3] and report.added == 3 and report.skipped == []
    np.testing.assert_array_equal(gallery.embeddings("erin"), vectors)


# --- scale ---------------------------------------------------------------------------------------
def test_search_100k_templates_matches_brute_force(gallery_store):
    people, per = 10_000, 10
    rng = np.random.default_rng(19)
    centres = rng.standard_normal((people, DIM), dtype=np.float32)
    pool = rng.standard_normal((4096, DIM), dtype=np.float32)
    vectors = pool[rng.integers(0, len(pool), people * per)]  # templates: centre + 0.6 x noise
    vectors *= 0.6
    vectors.reshape(people, per, DIM)[...] += centres[:, None, :]
    vectors /= np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]
    names = [f"p{i:05d}" for i in range(people)]
    location = gallery_store.new()
    with Gallery(location, signature=SIG, dim=DIM) as g:
        assert g.enroll_many((names[i], vectors[i * per : (i + 1) * per]) for i in range(people)) == people * per
        rows = rng.choice(people, 8, replace=False)
        noise = pool[:8] / np.linalg.norm(pool[:8], axis=1, keepdims=True)
        queries = np.concatenate([vectors[rows * per] + 0.3 * noise, rng.standard_normal((8, DIM), dtype=np.float32)])
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        def check(got_all: list[list[Match]], alive: np.ndarray) -> None:
            scores = (queries @ vectors.T).reshape(len(queries), people, per)
            best = np.where(alive[None, :], scores.max(axis=2), -np.inf)
            for qi, got in enumerate(got_all):
                top = np.argsort(-best[qi], kind="stable")[:5]
                np.testing.assert_allclose([m.score for m in got], best[qi, top], atol=1e-5)
                for m in got:  # tie-proof: each returned identity really has that score
                    i = int(m.identity[1:])
                    assert alive[i] and best[qi, i] == pytest.approx(m.score, abs=1e-5)
                    assert scores[qi, i, m.index] == pytest.approx(m.score, abs=1e-5)

        alive = np.ones(people, bool)
        check(g.search(queries, k=5), alive)
        assert [g.search(q, k=1)[0].identity for q in queries[:8]] == [names[r] for r in rows]
        assert g.matrix_bytes <= 1.1 * vectors.nbytes + 64 * DIM * 4  # one float32 matrix (+ small slack)

        # the cached matrix after removals in the middle equals a fresh load
        for r in rows[:3]:
            g.remove(names[r])
            alive[r] = False
        check(g.search(queries, k=5), alive)
    with Gallery(location, signature=SIG, check="none") as fresh:
        check(fresh.search(queries, k=5), alive)

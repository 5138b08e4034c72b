"""Two fleet doors end to end on real faces: ``door_access.py`` with ``[gallery] url`` on a real PostgreSQL.

Door A enrols people into the central gallery, door B lists and revokes one, each door runs on a
video (real photos from shared/faces/pairs, the real detector and recogniser) searching its local
replica, and ``door_access.py events`` reads both doors' decisions from the central log. The
people and the calibrated threshold are those of test_apps_door's end-to-end test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_path
from test_apps_door import (  # noqa: F401  (models and calibrated are fixtures)
    ENROLLED,
    STRANGERS,
    base_config,
    calibrated,
    door,
    letterbox,
    models,
    write_config,
    write_video,
)

pytest.importorskip("psycopg", reason="asset missing: psycopg (pip install 'gfn-edge[postgres]')")


def _config(models: dict, tmp: Path, name: str, url: str, threshold: float) -> Path:  # noqa: F811
    folder = tmp / name
    folder.mkdir()
    return write_config(
        folder / "door.toml",
        base_config(
            models,
            folder,
            gallery={"url": url, "path": folder / "replica.db"},
            fleet={"door_id": name, "max_stale": 60.0, "check_interval": 5.0, "ship_interval": 0.2},
            recognition={"threshold": threshold, "consecutive": 3},
            liveness={"enabled": False},  # photos of photos
        ),
    )


def _events(cfg: Path, *args: str) -> list[dict]:
    proc = door("events", "--config", cfg, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_two_doors_share_one_gallery_and_one_event_log(models, calibrated, pg_dsn, tmp_path: Path):  # noqa: F811
    from gfn_edge import read_image

    folder = shared_path("faces", "pairs")
    threshold = calibrated["threshold"]
    cfg_a = _config(models, tmp_path, "door-a", pg_dsn, threshold)
    cfg_b = _config(models, tmp_path, "door-b", pg_dsn, threshold)

    for name in ("p16", "p18"):  # enrolled on door A, into the central gallery
        proc = door("enroll", "--config", cfg_a, "--name", name, folder / ENROLLED[name][0])
        assert proc.returncode == 0 and f"enrolled '{name}'" in proc.stdout, proc.stderr
    from gfn_edge import Gallery
    from gfn_edge.manifest import read_manifest

    signature = read_manifest(models["recognizer"]).signature
    with Gallery(pg_dsn, signature=signature) as central:  # what `calibrate --save` stores, once for every door
        central.set_calibration(threshold, 0.01, signature)
    listed = door("list", "--config", cfg_b, "--json")  # door B sees them: one gallery
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["name"] for line in listed.stdout.splitlines()) == ["p16", "p18"]
    removed = door("remove", "--config", cfg_b, "p18")  # and revokes one for everybody
    assert removed.returncode == 0 and "removed 'p18'" in removed.stdout, removed.stderr

    shown = {name: letterbox(read_image(folder / probe)) for name, (_, probe) in ENROLLED.items()}
    shown["s22"] = letterbox(read_image(folder / STRANGERS["s22"]))
    write_video(tmp_path / "b.avi", [shown[n] for n in ("p16", "p18", "s22")])
    write_video(tmp_path / "a.avi", [shown["p16"]])
    for cfg, video in ((cfg_b, "b.avi"), (cfg_a, "a.avi")):
        proc = door("run", "--config", cfg, "--source", tmp_path / video)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "fleet door" in proc.stderr

    central = _events(cfg_a)  # every door's decisions, from the central log
    print("\n" + "\n".join(f"{r['door']} #{r['id']} {r['decision']} {r['identity']}" for r in central))
    decisions = {(r["door"], r["decision"], r["identity"]) for r in central}
    assert decisions == {("door-b", "grant", "p16"), ("door-b", "unknown", None), ("door-a", "grant", "p16")}
    assert [r["decision"] for r in central if r["door"] == "door-b"] == ["grant", "unknown", "unknown"]  # p18 was revoked
    assert not any(r["damaged"] for r in central)
    assert [r["door"] for r in _events(cfg_a, "--door", "door-a")] == ["door-a"]
    local = _events(cfg_b, "--local")  # door B's own log holds the same three
    assert [(r["id"], r["decision"]) for r in local] == [(r["id"], r["decision"]) for r in central if r["door"] == "door-b"]

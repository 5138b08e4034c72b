"""File-level care of an SQLite gallery: errors worded for people, backups linked into place,
no -wal/-shm left behind by a read-only reader, fsync of files and folders."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path

from ..errors import GalleryError

log = logging.getLogger("gfn_edge.gallery")


def storage_error(path: Path, exc: Exception, action: str, timeout: float) -> GalleryError:
    """What went wrong with the file, and what to do, as a ``GalleryError``."""
    if isinstance(exc, UnicodeDecodeError):
        return GalleryError(f"gallery {path} is damaged (undecodable text: {exc}); it was left untouched. Restore it from a backup")
    text = str(exc)
    if "locked" in text or "busy" in text:
        return GalleryError(f"gallery {path} is locked by another process (could not {action} within {timeout:g} s)")
    if isinstance(exc, sqlite3.OperationalError) and ("readonly" in text or "read-only" in text):
        return GalleryError(f"gallery {path} is read-only (could not {action}): {text}")
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return GalleryError(f"gallery {path} is damaged ({text}); it was left untouched. Restore it from a backup, or re-enrol into a new file")
    if "full" in text:
        return GalleryError(f"could not {action} gallery {path}: {text}; free some disk space")
    return GalleryError(f"could not {action} gallery {path}: {text}. Nothing was changed; if this repeats the file may be damaged (restore a backup)")


def online_backup(conn: sqlite3.Connection, source: Path, dest: Path) -> Path:
    """Copy ``conn``'s database to ``dest`` with SQLite's online backup (consistent while others
    write), through a temporary file linked into place: ``dest`` is whole or absent."""
    if dest.exists():
        raise GalleryError(f"backup target {dest} exists; remove it or choose another name")
    if not dest.parent.is_dir():
        raise GalleryError(f"cannot back up to {dest}: folder {dest.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".backup", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        target = sqlite3.connect(str(tmp))
        try:
            conn.backup(target)
        finally:
            target.close()
        fsync_file(tmp)
        os.link(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(str(tmp) + extra).unlink(missing_ok=True)
    log.info("gallery %s backed up to %s", source, dest)
    return dest


def sidecars(path: Path) -> set[str]:
    """Which of the -wal/-shm files next to ``path`` exist now."""
    return {s for s in ("-wal", "-shm") if Path(str(path) + s).exists()}


def tidy_readonly_sidecars(path: Path) -> None:
    """Remove the -wal/-shm files SQLite made for a read-only connection (now closed).

    A read-only connection cannot delete them; a brief read-write connection does, when it is
    the file's last one (SQLite's own clean-up, which leaves them alone while anyone else has the
    file open, and writes nothing to an up-to-date file). Without write access nothing is tried:
    then SQLite could not have created them either.
    """
    if not sidecars(path) or not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=0.1, isolation_level=None)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.debug("gallery %s: could not tidy -wal/-shm after read-only use: %s", path, exc)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)

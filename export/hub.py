"""Find model weights: a path as given, a mirror folder, the user cache, or the upstream URL.

Resolution order for a registry name:

1. each folder in ``mirror=`` or ``GFN_EDGE_MIRROR`` (``os.pathsep``-separated), at the entry's
   ``mirror_path``;
2. the user cache (``GFN_EDGE_CACHE``, default ``~/.cache/gfn-edge``);
3. a download from the entry's upstream URL into that cache, sha256-checked and renamed into
   place only when complete, so an interrupted download never leaves a file that looks good.

Where the registry knows no hash, the first download's hash is printed and recorded next to
the file (``<file>.sha256``); later uses are checked against that record.

Only the training side downloads checkpoints, so this module lives there (``gfn_edge.export.hub``);
a device opens bundles, whose files are checked by :func:`gfn_edge.manifest.verify_bundle_files`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from gfn_edge.digest import sha256_file
from gfn_edge.errors import ChecksumError, WeightsNotFoundError
from gfn_edge.progress import Progress
from gfn_edge.registry import REGISTRY, ModelSpec, get_spec

__all__ = ["cache_dir", "mirror_dirs", "resolve_spec_weights", "resolve_weights", "sha256_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def mirror_dirs(mirror: str | os.PathLike[str] | None = None) -> list[Path]:
    """Mirror folders to search, the explicit one first."""
    dirs: list[Path] = []
    if mirror:
        dirs.append(Path(mirror))
    env = os.environ.get("GFN_EDGE_MIRROR", "")
    dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    return dirs


def cache_dir() -> Path:
    return Path(os.environ.get("GFN_EDGE_CACHE") or Path.home() / ".cache" / "gfn-edge")


def _recorded_hash(path: Path) -> str | None:
    """The hash recorded beside ``path`` by its first download (entries without a published hash)."""
    record = path.with_name(path.name + ".sha256")
    if record.is_file():
        words = record.read_text().split()
        return words[0] if words else None
    return None


def _check_hash(path: Path, expected: str | None, origin: str) -> str:
    actual = sha256_file(path)
    if expected is None:
        expected = _recorded_hash(path)
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"{path} ({origin}) has sha256 {actual}, expected {expected}: the file is damaged, truncated or a different "
            f"release. Delete it and download it again, or pass the right file's path."
        )
    return actual


def _download(url: str, dest: Path, expected: str | None, timeout: float = 30.0) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as exc:
                raise WeightsNotFoundError(
                    f"could not download {url}: {exc}. Without network access, download the file elsewhere and put it "
                    f"at {dest} or in a mirror folder named by GFN_EDGE_MIRROR."
                ) from exc
            with response:
                total = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with Progress(total, f"download {dest.name}", unit="B", unit_scale=True) as bar:
                    while True:
                        try:
                            block = response.read(_CHUNK)
                        except (OSError, urllib.error.URLError) as exc:
                            raise WeightsNotFoundError(f"download of {url} broke off after {received} bytes: {exc}") from exc
                        if not block:
                            break
                        out.write(block)
                        digest.update(block)
                        received += len(block)
                        bar.update(len(block))
            if total is not None and received != total:
                raise WeightsNotFoundError(f"download of {url} is truncated: got {received} of {total} bytes; try again or fetch it by hand into {dest}")
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise ChecksumError(
                f"downloaded {url} has sha256 {actual}, expected {expected}; the file was not kept. "
                f"The upstream file may have changed: check the release, or pass a verified file's path."
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if expected is None:
        dest.with_name(dest.name + ".sha256").write_text(actual + "\n")
        log.warning("no published sha256 for %s; first download has sha256 %s (recorded in %s.sha256)", dest.name, actual, dest.name)
    return dest


def resolve_weights(
    name_or_path: str | os.PathLike[str],
    mirror: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> Path:
    """Local path of a checkpoint given a registry name or a path.

    A path (anything that is not a registry name) is used as is and must exist.
    """
    key = str(name_or_path)
    if key not in REGISTRY:
        path = Path(key).expanduser()
        if path.is_file():
            return path
        if os.sep in key or "/" in key or Path(key).suffix:
            raise WeightsNotFoundError(f"checkpoint file {path} does not exist")
        get_spec(key)  # raises UnknownModelError with suggestions
    spec = REGISTRY[key]
    return resolve_spec_weights(spec, mirror=mirror, download=download)


def resolve_spec_weights(spec: ModelSpec, mirror: str | os.PathLike[str] | None = None, download: bool = True) -> Path:
    src = spec.weights
    if src is None or src.mirror_path is None:
        raise WeightsNotFoundError(
            f"{spec.name} has no released checkpoint; pass the path of your own checkpoint (--model PATH --arch {spec.name}) "
            f"or export it with random weights for shape and speed checks (--random-weights)"
        )
    for folder in mirror_dirs(mirror):
        candidate = folder / src.mirror_path
        if candidate.is_file():
            _check_hash(candidate, src.sha256, f"mirror {folder}")
            return candidate
    cached = cache_dir() / "weights" / src.mirror_path
    if cached.is_file():
        _check_hash(cached, src.sha256, "user cache")
        return cached
    searched = ", ".join(str(d) for d in mirror_dirs(mirror)) or "no mirror set (GFN_EDGE_MIRROR)"
    if src.url is None:
        raise WeightsNotFoundError(
            f"{spec.name}: {Path(src.mirror_path).name} was not found (searched {searched} and {cached.parent}) and has no "
            f"public download URL ({src.upstream}). Put the file at <mirror>/{src.mirror_path} or pass its path."
        )
    if not download:
        raise WeightsNotFoundError(f"{spec.name}: {Path(src.mirror_path).name} is not in {searched} nor in {cached.parent}, and downloads are off")
    log.info("%s: downloading %s", spec.name, src.url)
    # a re-download of an unhashed entry must match what the first download recorded
    return _download(src.url, cached, src.sha256 or _recorded_hash(cached))

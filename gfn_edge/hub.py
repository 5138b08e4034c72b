"""Old import path of :mod:`gfn_edge.export.hub` (weight downloads, a training-side job).

Kept so existing code keeps importing; new code imports ``gfn_edge.export.hub`` (downloads) or
``gfn_edge.digest`` (``sha256_file``). The device side never imports this module.
"""

from __future__ import annotations

import warnings

from gfn_edge.export.hub import cache_dir, mirror_dirs, resolve_spec_weights, resolve_weights, sha256_file

__all__ = ["cache_dir", "mirror_dirs", "resolve_spec_weights", "resolve_weights", "sha256_file"]

warnings.warn("gfn_edge.hub moved to gfn_edge.export.hub (and gfn_edge.digest for sha256_file)", DeprecationWarning, stacklevel=2)

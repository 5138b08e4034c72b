"""Old import path of :class:`gfn_edge.export.context.ExportContext`."""

from __future__ import annotations

from ..context import ExportContext

__all__ = ["ExportContext"]

"""Exceptions with messages that name the problem and what to do about it.

Each subclasses ``GfnEdgeError`` (and, where it helps callers, the matching builtin) so an app
can catch everything from the SDK with one ``except``.
"""
from __future__ import annotations


class GfnEdgeError(Exception):
    """Base of every error gfn-edge raises on purpose."""


class UnknownModelError(GfnEdgeError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsNotFoundError(GfnEdgeError, FileNotFoundError):
    pass


class ChecksumError(GfnEdgeError, ValueError):
    pass


class CheckpointError(GfnEdgeError, ValueError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class ManifestError(GfnEdgeError, ValueError):
    """A bundle whose manifest is missing, damaged or of another model."""


class ArtifactError(GfnEdgeError, ValueError):
    """A model file that is missing, truncated or not what its manifest says."""


class MissingDependencyError(GfnEdgeError, ImportError):
    """An optional package is not installed; the message names the extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"{package} is needed{what} but is not installed; install it with: pip install 'gfn-edge[{extra}]'")
        self.package = package
        self.extra = extra


class ImageError(GfnEdgeError, ValueError):
    """An image the pipeline cannot use (empty, wrong type, wrong shape)."""


class GalleryError(GfnEdgeError, RuntimeError):
    """A gallery file that is damaged, locked, or was built with another model."""


class VerificationError(GfnEdgeError, RuntimeError):
    """An exported artifact that does not match its reference within tolerance."""


class CalibrationError(GfnEdgeError, ValueError):
    """A calibration set that cannot be built or does not fit the model."""


class OptionError(GfnEdgeError, ValueError):
    """An option or setting that is unknown or out of range; the message names the valid ones."""

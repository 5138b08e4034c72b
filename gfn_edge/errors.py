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


class PairsFileError(GfnEdgeError, ValueError):
    """A labelled pairs CSV (``image_a,image_b,same``) that cannot be read as written."""


class InvalidArgumentError(GfnEdgeError, ValueError):
    """A value out of range, non-finite or of the wrong kind, given to the API or a command line."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong Python type (a string where a number belongs, ...)."""


class UnsafeSettingError(InvalidArgumentError):
    """A setting that would let the wrong person in or turn a check off without saying so."""


class NonFiniteError(InvalidArgumentError):
    """A NaN or infinite value (embedding, score, threshold) that must never reach a decision."""


class BackendError(GfnEdgeError, ValueError):
    """An unknown inference backend, or one that cannot run the artifact it was asked to."""


class ResourceLimitError(GfnEdgeError, ValueError):
    """An input that would need more memory or time than the limits allow (decompression bombs ...)."""


class UsageError(GfnEdgeError, ValueError):
    """A command line that cannot be carried out as given (a command-line tool's own checks)."""


class OptionError(InvalidArgumentError):
    """An unknown option or key (e.g. a ``--tolerance`` key no verification measures); the message names the valid ones."""

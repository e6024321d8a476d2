"""The one error hierarchy shared by the format, the server and the client.

Every failure a user can meet is a `SwupdError` subclass with a one-line message and an exit
status, so command-line front ends print one line and exit non-zero instead of a traceback.
"""

from __future__ import annotations


class SwupdError(Exception):
    """Base of every expected failure; `exit_code` is the command's documented status."""

    exit_code = 1


class UsageError(SwupdError):
    """The command line or an input file asks for something impossible."""

    exit_code = 2


class UnsafePathError(UsageError):
    """A path the client would read or run as root can be changed by another user."""


class FormatError(SwupdError):
    """Bytes that claim to be a manifest, signature, key or archive are malformed."""

    exit_code = 3


class SignatureError(SwupdError):
    """A signature is missing, malformed or made by no trusted key."""

    exit_code = 4


class HashMismatchError(SwupdError):
    """Content does not hash to the value a verified manifest pins."""

    exit_code = 5


class SizeLimitError(SwupdError):
    """Data is larger than its signed size or a fixed cap allows."""

    exit_code = 6


class BuildError(SwupdError):
    """The build side cannot produce a correct version from its input."""

    exit_code = 10


class RollbackError(SwupdError):
    """Signed content older than what the device runs or has already seen."""

    exit_code = 7


class ExpiredError(SwupdError):
    """The signed `latest` pointer has expired: the server may be frozen on an old version."""

    exit_code = 8


class CompatError(SwupdError):
    """Content built for another kind of device (compat id mismatch)."""

    exit_code = 9


class NetworkError(SwupdError):
    """The update server could not be reached or kept failing."""

    exit_code = 11


class NotFoundError(NetworkError):
    """The server answered that a file does not exist."""

    exit_code = 12


class DiskFullError(SwupdError):
    """No space left where the client must write."""

    exit_code = 13


class LockedError(SwupdError):
    """Another swupd instance holds the lock."""

    exit_code = 14


class TreeIOError(SwupdError):
    """Reading or writing the target tree or the state directory failed."""

    exit_code = 15


class BundleError(SwupdError):
    """A bundle does not exist, or cannot be removed because something needs it."""

    exit_code = 16

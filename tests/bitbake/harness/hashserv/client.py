"""Stand-in for `hashserv.client` (imported by `bb.siggen`); see the package's docstring."""

from . import HashServiceUnavailable

__all__ = ["HashConnectionError", "HashServiceUnavailable"]


class HashConnectionError(HashServiceUnavailable):
    """Named like the real client's error, for code that catches it."""

"""Stand-in for BitBake's hash equivalence server package, which the bitbake-setup wheel lacks.

`bb.siggen` and `bb.cooker` import `hashserv` at module level. The test harness runs without
hash equivalence (BB_HASHSERVE must stay unset), so only the unihash check works; every way of
reaching a server raises.
"""

import re

__all__ = ["create_async_client", "create_client", "create_server", "is_valid_unihash"]

_UNIHASH = re.compile(r"[0-9a-f]{8,128}\Z")


class HashServiceUnavailable(RuntimeError):
    """Hash equivalence was asked for; the test harness has none."""


def is_valid_unihash(unihash):
    """True for a lowercase hexadecimal hash, the form task hashes take."""
    return isinstance(unihash, str) and _UNIHASH.match(unihash) is not None


def _unavailable(*_args, **_kwargs):
    raise HashServiceUnavailable("the BitBake test harness has no hash equivalence server: leave BB_HASHSERVE unset")


create_client = _unavailable
create_async_client = _unavailable
create_server = _unavailable

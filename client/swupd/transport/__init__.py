"""Moving bytes from the update server to the device's state directory, and nothing else.

The transport knows HTTP(S) and `file://`, enforces a maximum length on every download,
retries and resumes over a slow, lossy network, and reports failures as `SwupdError`s. It does
not parse, verify or interpret what it fetches, and it writes only to the destination paths it
is handed: everything it returns is untrusted until the format layer has checked it against a
signature or a signed hash.
"""

from swupd.transport.fetcher import Fetcher, NetConfig, Progress

__all__ = ["Fetcher", "NetConfig", "Progress"]

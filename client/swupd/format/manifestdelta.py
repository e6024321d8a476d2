"""Manifest deltas: a new version of a bundle manifest as a zstd frame compressed with the
previous version as a raw-content dictionary (zstd's "patch from").

Manifests are sorted text whose lines mostly survive from one version to the next, so the
delta is a few percent of the compressed manifest. A delta is only a way to obtain bytes the
signed MoM pins: the device checks the result's size before decompressing and its hash after,
and falls back to the whole manifest when either fails. The frame declares its content size;
its window reaches back over the whole dictionary, so the two sizes together are held to
`Limits.max_manifest_delta_window`. The server makes them (swupd_server/encode.py).
"""

from __future__ import annotations

import zstandard

from .errors import FormatError, SizeLimitError
from .limits import LIMITS, Limits


def window_log(old_size: int, new_size: int) -> int:
    return max(10, (old_size + new_size - 1).bit_length())


def usable(old_size: int, new_size: int, limits: Limits = LIMITS) -> bool:
    """Whether a delta between manifests of these sizes fits the window devices accept."""
    return 1 << window_log(old_size, new_size) <= limits.max_manifest_delta_window


def apply(old: bytes, delta: bytes, size: int, limits: Limits = LIMITS) -> bytes:
    """The new manifest, exactly `size` bytes (its signed size), or FormatError."""
    if not usable(len(old), size, limits):
        raise SizeLimitError("manifests too large for a delta")
    try:
        if zstandard.frame_content_size(delta) != size:
            raise FormatError("manifest delta does not declare the signed size")
        d = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        dctx = zstandard.ZstdDecompressor(dict_data=d, max_window_size=limits.max_manifest_delta_window)
        new = dctx.decompress(delta, max_output_size=size)
    except zstandard.ZstdError as e:
        raise FormatError(f"corrupt manifest delta: {e}") from None
    if len(new) != size:
        raise FormatError("manifest delta produced the wrong size")
    return new

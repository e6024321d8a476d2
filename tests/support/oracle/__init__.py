"""The tests' own reading of the update format: file hash, manifests, fullfiles, deltas, packs
and trees on disk.

Written from docs/format.md with the standard library, zstandard, bsdiff4's patch and PyNaCl;
it imports nothing from `swupd` or `swupd_server`. Both the build-side and the device-side
tests check the product against it, so they compare bytes with the documented format, not the
product's code with itself.
"""

from .content import (
    DELTA_HEADER,
    ZSTD_MAGIC,
    Delta,
    apply_delta,
    delta_hashes,
    pack_frames,
    parse_delta,
    read_fullfile,
    read_pack,
    staged_hash,
    unzstd,
)
from .filehash import (
    UNHASHED_XATTRS,
    ZERO_HASH,
    FormatViolation,
    check,
    manifest_hash,
    parse_xattr_records,
    swupd_hash,
    xattr_blob,
    xattr_records,
)
from .manifest import (
    Entry,
    Latest,
    Manifest,
    keyid,
    load_key,
    load_manifest,
    parse_latest,
    parse_manifest,
    signature_lines,
    verify,
)
from .objects import Obj, copy_tree, install, read_obj, read_tree, read_xattrs, remove

__all__ = [
    "DELTA_HEADER", "UNHASHED_XATTRS", "ZERO_HASH", "ZSTD_MAGIC", "Delta", "Entry", "FormatViolation", "Latest",
    "Manifest", "Obj", "apply_delta", "check", "copy_tree", "delta_hashes", "install", "keyid", "load_key",
    "load_manifest", "manifest_hash", "pack_frames", "parse_delta", "parse_latest", "parse_manifest",
    "parse_xattr_records", "read_fullfile", "read_obj", "read_pack", "read_tree", "read_xattrs", "remove",
    "signature_lines", "staged_hash", "swupd_hash", "unzstd", "verify", "xattr_blob", "xattr_records",
]  # fmt: skip

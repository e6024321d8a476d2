"""Every size and count limit of the format, in one place.

Parsers and downloaders refuse input past these bounds, so hostile or corrupted data can only
cause an error, never exhaust memory or disk. Both sides read the same object, so a server
cannot publish what a device would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Upper bounds applied while reading and writing update content."""

    max_manifest_bytes: int = 256 * 1024 * 1024
    max_mom_bytes: int = 8 * 1024 * 1024
    max_entries: int = 4_000_000
    max_header_lines: int = 10_000
    max_path_bytes: int = 4096
    max_name_bytes: int = 255
    max_version: int = 2**31 - 1
    max_file_bytes: int = 64 * 1024**3
    max_latest_bytes: int = 4096
    max_sig_bytes: int = 16 * 1024
    max_signatures: int = 16
    max_key_bytes: int = 1024
    # Key introductions a device follows to reach a key it trusts (a chain of rotations), and
    # learned keys it keeps; each costs one small download or file and one signature check.
    max_key_chain: int = 8
    max_learned_keys: int = 32
    max_xattr_bytes: int = 64 * 1024
    # Deltas hold the old file in memory on both sides; larger files travel as fullfiles.
    max_delta_source_bytes: int = 16 * 1024 * 1024
    # Making a bsdiff delta takes a suffix array of 16 bytes per old byte on the build side;
    # larger files use zstd-dict.
    max_bsdiff_bytes: int = 8 * 1024 * 1024
    # A zstd-dict delta holds the old file (its dictionary) and the new one (its window) in
    # memory at once on the device: the two together up to this, which bounds what one delta
    # adds to a process (docs/benchmarks.md, the release upgrade); larger pairs use
    # bsdiff (old file only) or travel as fullfiles.
    max_zstd_dict_pair_bytes: int = 10 * 1024 * 1024
    min_delta_target_bytes: int = 200
    # A manifest delta's window reaches back over the whole old manifest (manifestdelta.py):
    # the two manifests' sizes together; larger manifests travel whole.
    max_manifest_delta_window: int = 16 * 1024 * 1024
    # A pack up to this size decompressed is unpacked in memory (in each importing process):
    # its members are then sliced out instead of streamed; a larger one is streamed.
    max_pack_in_memory: int = 4 * 1024 * 1024
    # Pack members are imported by up to this many processes (never more than the CPUs this
    # process may run on); 1 keeps the client in one process.
    max_import_processes: int = 4
    # Free space a transaction leaves on each file system it writes to, beyond what it counts.
    min_free_bytes: int = 1 << 20


LIMITS = Limits()

"""Boot content a version drops is ghosted by the server, on every path the device treats as
boot content (`swupd.format.paths.BOOT_PREFIXES`), the EFI system partition included: a device
keeps a ghosted file, so the kernel it runs and the way back to it stay until the next boot."""

from __future__ import annotations

import shutil

from buildutil import create
from support.trees import write_file
from swupd.format import layout
from swupd.format import manifest as mf
from swupd.format.manifest import Status
from swupd.format.paths import BOOT_PREFIXES

KEPT = {"/usr/bin/tool": b"#!/bin/sh\n"}
BOOT = {
    "/efi/EFI/Linux/linux-1.efi": b"unified kernel image 1\n",
    "/efi/loader/entries/linux-1.conf": b"title linux 1\n",
    "/boot/vmlinuz-1": b"kernel 1\n",
    "/usr/lib/modules/1/kernel/a.ko": b"module 1\n",
}
OTHER = {"/usr/share/doc/gone.txt": b"dropped by version 20\n", "/efi-notes/readme": b"not the ESP\n"}


def test_dropped_efi_and_kernel_files_are_ghosted_and_others_deleted(keys, tmp_path):
    root = tmp_path / "rootfs"
    for path, data in {**KEPT, **BOOT, **OTHER}.items():
        write_file(str(root), path, data)
    bundles = tmp_path / "bundles.toml"
    bundles.write_text("")
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private, bundles)
    for path in [*BOOT, *OTHER]:
        (root / path.lstrip("/")).unlink()
    for top in ("efi", "boot", "usr/lib/modules", "usr/share/doc", "efi-notes"):
        shutil.rmtree(root / top)
    create(www, root, 20, keys.private, bundles)

    with open(f"{www}/{layout.manifest(20, 'os-core')}", "rb") as f:
        entries = mf.loads(f.read()).by_path()
    ghosted = {p for p, e in entries.items() if e.status == Status.GHOSTED}
    deleted = {p for p, e in entries.items() if e.status == Status.DELETED}
    assert "/efi/EFI/Linux/linux-1.efi" in ghosted and "/boot/vmlinuz-1" in ghosted
    # What the device treats as boot content is exactly what the server ghosts.
    dropped = {p for p, e in entries.items() if not e.present}
    assert ghosted == {p for p in dropped if p.startswith(BOOT_PREFIXES)}
    assert set(BOOT) <= ghosted
    assert set(OTHER) <= deleted and "/efi-notes" in deleted
    assert all(entries[p].present for p in KEPT)

"""Rebuilding from the same rootfs directory: whatever changed in place is noticed, even when
size and mtime are kept (the build caches what it scanned)."""

from __future__ import annotations

import os

import exampletree
import reader
from buildutil import all_entries, create


def test_in_place_changes_are_noticed(tmp_path, keys):
    root = exampletree.make_tree(str(tmp_path / "rootfs"), 1)
    www = str(tmp_path / "www")
    create(www, root, 10, keys.private)
    w = reader.Www(www, keys.raw)
    before = all_entries(w.bundles(10))

    motd = os.path.join(root, "etc/motd")
    st = os.stat(motd)
    with open(motd, "r+b") as f:
        f.write(b"X")  # same size, other content
    os.utime(motd, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    os.chmod(os.path.join(root, "usr/share/doc/README"), 0o600)
    os.chown(os.path.join(root, "opt/app/config.txt"), 1000, 1000)
    create(www, root, 20, keys.private)

    after = all_entries(w.bundles(20))
    for path in (b"/etc/motd", b"/usr/share/doc/README", b"/opt/app/config.txt"):
        assert after[path].hash != before[path].hash, path
        assert after[path].version == 20
        assert after[path].hash == reader.read_obj(os.fsencode(root) + path).hash()
    assert after[b"/usr/bin/ls"].version == 10
    assert w.fullfile(20, after[b"/etc/motd"].hash).data.startswith(b"Xelcome")

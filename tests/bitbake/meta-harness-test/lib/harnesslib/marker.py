"""Writes a marker file into a rootfs, for the harness tests."""

import os


def write(rootfs, name, text):
    path = os.path.join(rootfs, "etc", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path

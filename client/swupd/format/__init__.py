"""The update format shared by the build side and the device.

Model and text form of manifests, the swupd file hash, Ed25519 signature files, path rules, the
names of everything in `www/`, fullfile and delta encodings, the limits that bound them, and
what the two commands do alike on the command line (cmdline.py).
This package does no I/O beyond reading local files it is handed.
"""

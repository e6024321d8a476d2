"""The update format shared by the build side and the device.

Model and text form of manifests, the swupd file hash, Ed25519 signature files, path rules
(boot paths, bundle names and markers, os-release), the names of everything in `www/`, the
layouts of fullfiles and deltas and their decoding, the limits that bound them, and what the
two commands do alike on the command line (cmdline.py). Every rule both sides must agree on is
declared here once; what only the build side does (encoding) lives in swupd_server.
This package does no I/O beyond reading local files it is handed.
"""

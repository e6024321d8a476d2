# swupd-server-native compresses fullfiles and packs with zstandard during image builds. A native
# variant adds recipes and leaves the target recipe's signatures as they are.
# nooelint: oelint.vars.noncoreoverride - meta-python's recipe has no native variant
BBCLASSEXTEND += "native"

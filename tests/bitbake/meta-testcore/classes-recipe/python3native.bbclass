# python3native.bbclass of meta-testcore: the build's own Python 3, as OE-core's python3-native.
# Here it is the interpreter running BitBake, the version python3-dir.bbclass describes.
PYTHON = "${@__import__('sys').executable}"

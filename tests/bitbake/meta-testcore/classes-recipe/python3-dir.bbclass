# python3-dir.bbclass of meta-testcore: where Python 3 modules go in the target, as in OE-core.
# The version is the one running BitBake (the test harness's virtual environment).
PYTHON_BASEVERSION = "${@'%d.%d' % __import__('sys').version_info[:2]}"
PYTHON_ABI = ""
PYTHON_DIR = "python${PYTHON_BASEVERSION}"
PYTHON_PN = "python3"
PYTHON_SITEPACKAGES_DIR = "${libdir}/${PYTHON_DIR}/site-packages"

COMPATIBLE_MACHINE:intel-corei7-64 = "intel-corei7-64"
KMACHINE:intel-corei7-64 = "intel-corei7-64"

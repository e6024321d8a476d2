"""Shared set-up of the whole suite: the example OS builder is importable as `exampletree`, and
test helpers as `support.*`."""

import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "examples"))
sys.path.insert(0, os.path.join(TOP, "tests"))

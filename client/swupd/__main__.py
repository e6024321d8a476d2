"""`python3 -m swupd`, for devices whose image has no console script wrapper."""

import sys

from .cli import main

sys.exit(main())

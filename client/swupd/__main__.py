"""`python3 -m swupd`, for devices whose image has no console script wrapper."""

from .cli import entry

entry()

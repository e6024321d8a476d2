"""Stand-in for `prserv.serv`: no PR server; `auto_start` refuses a configured PRSERV_HOST."""

import logging

__all__ = ["PRServiceConfigError", "auto_shutdown", "auto_start"]


class PRServiceConfigError(Exception):
    """PRSERV_HOST is set, but the test harness has no PR server."""


def auto_start(d):
    """Return the PR server address to use: always None; a set PRSERV_HOST is an error."""
    host = (d.getVar("PRSERV_HOST") or "").strip()
    if host:
        message = f"PRSERV_HOST = {host!r}, but the BitBake test harness has no PR server; unset it"
        logging.getLogger("BitBake").error(message)
        raise PRServiceConfigError(message)
    return None


def auto_shutdown():
    """Nothing was started, so nothing stops."""

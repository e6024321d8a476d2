"""meta-swupd's own `bitbake`, `bitbake-server` and `bitbake-worker` programs for running real
BitBake from the `bitbake-setup` wheel, which ships the `bb` library but not these programs.

They follow the internal interfaces of the BitBake release pinned in scripts/requirements-dev.txt
(`BITBAKE_VERSION`): the server's command line (bb/server/process.py) and the worker protocol
(bb/runqueue.py) are not stable between releases.
"""

BITBAKE_VERSION = "2.19.0"


def check_bitbake_version():
    """None when the installed `bb` is the release this harness follows, else a message."""
    import bb

    if bb.__version__ != BITBAKE_VERSION:
        return (
            f"the BitBake test harness follows BitBake {BITBAKE_VERSION}, but bb {bb.__version__} is "
            f"installed ({bb.__file__}); run tests/bitbake/install-harness"
        )
    return None

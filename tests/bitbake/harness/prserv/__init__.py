"""Stand-in for BitBake's PR service package, which the bitbake-setup wheel lacks.

Only `prserv.serv` is used (by `bb.cooker`); the test harness has no PR server, so PRSERV_HOST
must stay unset.
"""

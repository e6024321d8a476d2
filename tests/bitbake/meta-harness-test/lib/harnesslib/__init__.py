"""Layer library of meta-harness-test (addpylib): BitBake tracks `marker` in task signatures."""

BBIMPORTS = ["marker"]

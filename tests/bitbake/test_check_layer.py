"""OE-core's own yocto-check-layer accepts meta-swupd on wrynose: README and SECURITY.md, parse,
environment, world builds (plain and with the yocto-check-layer class) and the signature check,
which fails when adding the layer changes any other recipe's task signatures."""

from __future__ import annotations

import re

import oe


def test_yocto_check_layer_passes_every_test(yocto):
    # Only OE-core in the build's layers: the tool adds the dependencies, takes the world
    # signatures, then adds the layer under test and compares.
    build = yocto.builddir("check", core_only=True)
    r = build.run(
        "yocto-check-layer", "--no-auto-dependency", "--dependency", str(yocto.meta_oe), str(yocto.meta_python),
        "--", str(yocto.layer),
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert re.search(r"^INFO: meta-swupd \.\.\. PASS$", out, re.M), oe.describe(r)
    assert r.returncode == 0, oe.describe(r)
    ran = set(re.findall(r"^INFO: (test_\w+) \(common\.CommonCheckLayer\.\w+\)", out, re.M))
    ran |= set(re.findall(r"(test_\w+) \(common\.CommonCheckLayer", out))
    assert {"test_readme", "test_security", "test_world", "test_signatures"} <= ran, out[-3000:]
    # Nine common tests run; the two skips are the BSP and distro classes, which do not apply.
    assert re.search(r"^INFO: Ran 9 tests", out, re.M) and "skipped=2)" in out, out[-3000:]

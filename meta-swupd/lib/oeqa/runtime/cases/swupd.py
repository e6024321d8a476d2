"""Runtime test for `runqemu` (oeqa): boot version N, update to a version N+10 served by the
host, then add a bundle and verify.

Build two versions of the image first, both with the same SWUPD_VERSION_URL pointing at the host
as the guest sees it (with TEST_RUNQEMUPARAMS = "slirp", http://10.0.2.2:8000, as
conf/local.conf.sample sets; with runqemu's tap networking, http://192.168.7.1:8000):
    OS_VERSION = "10"  bitbake ostro-image-swupd
    (change a file, e.g. a package version)  OS_VERSION = "20"  bitbake ostro-image-swupd
then boot the image built as version 10 (keep a copy of it before the second build) and run:
    bitbake ostro-image-swupd -c testimage   (TEST_SUITES += "swupd")
The test serves ${DEPLOY_DIR_SWUPD}/www from the host on port 8000 while it runs.
"""

import functools
import http.server
import os
import threading

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class SwupdTest(OERuntimeTestCase):
    @classmethod
    def setUpClass(cls):
        www = os.path.join(cls.td["DEPLOY_DIR_SWUPD"], "www")
        handler = functools.partial(_Quiet, directory=www)
        cls.httpd = http.server.ThreadingHTTPServer(("0.0.0.0", int(cls.td.get("SWUPD_TEST_PORT", "8000"))), handler)
        cls.thread = threading.Thread(target=cls.httpd.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.httpd.shutdown()

    def version(self):
        status, output = self.target.run("sed -n 's/^VERSION_ID=//p' /usr/lib/os-release")
        self.assertEqual(status, 0, output)
        return int(output.strip().strip('"'))

    @OEHasPackage(["swupd-client"])
    def test_swupd_info(self):
        status, output = self.target.run("swupd info")
        self.assertEqual(status, 0, output)

    @OETestDepends(["swupd.SwupdTest.test_swupd_info"])
    def test_swupd_update(self):
        before = self.version()
        status, output = self.target.run("swupd update", timeout=600)
        self.assertEqual(status, 0, output)
        after = self.version()
        self.assertGreater(after, before, output)
        status, output = self.target.run("swupd verify")
        self.assertEqual(status, 0, output)

    @OETestDepends(["swupd.SwupdTest.test_swupd_update"])
    def test_swupd_bundle_add_and_verify(self):
        status, output = self.target.run("swupd bundle-list --all --quiet")
        self.assertEqual(status, 0, output)
        installed = set(self.target.run("swupd bundle-list --quiet")[1].split())
        candidates = [b for b in output.split() if b not in installed]
        if not candidates:
            self.skipTest("every bundle is already installed")
        bundle = candidates[0]
        status, output = self.target.run(f"swupd bundle-add {bundle}", timeout=600)
        self.assertEqual(status, 0, output)
        status, output = self.target.run("swupd verify")
        self.assertEqual(status, 0, output)

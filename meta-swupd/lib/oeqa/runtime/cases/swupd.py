"""Runtime test of a swupd device (oeqa): boot version N, check for and apply an update, reboot
into it (its kernel included), verify, remove and add a bundle, and let the systemd timer of
`swupd autoupdate` take the device to the next version with nobody typing a command.

With an image built by the layer (see the layer's README, "Testing on a device"):
    OS_VERSION = "10"  bitbake ostro-image-swupd      (keep a copy of the image)
    (change something)  OS_VERSION = "20"  bitbake ostro-image-swupd
boot the copy of version 10, and run
    bitbake ostro-image-swupd -c testimage            (TEST_SUITES += "swupd")
Then this test serves ${DEPLOY_DIR_SWUPD}/www on port SWUPD_TEST_PORT (8000) of the host, as
the device sees it (conf/local.conf.sample: http://10.0.2.2:8000 with runqemu's slirp), and
the device updates to the newest version there; the timer's step needs releases published in
turn, below.

Test data (`td`, from the image's variables or oe-test's --test-data-file):
- SWUPD_TEST_SERVE: "0" when another server (nginx, a CDN) serves the stream; the test then
  starts none.
- SWUPD_TEST_RELEASES: "20:/path/www-20 30:/path/www-30", the published tree as it stands
  after each release, and SWUPD_TEST_WWW, the path the server serves: a symbolic link that the
  test points at each release in turn (an atomic rename), so that version 20 is what the
  update finds and version 30 what the timer finds later.
- SWUPD_TEST_TIMER_WAIT: seconds to wait for the timer's update (default 900); the image must
  make the timer fire soon after `autoupdate --enable` (a drop-in with OnActiveSec).
"""

import functools
import http.server
import os
import threading
import time

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class SwupdTest(OERuntimeTestCase):
    @classmethod
    def setUpClass(cls):
        releases = (cls.td.get("SWUPD_TEST_RELEASES") or "").split()
        cls.releases = [(int(r.split(":", 1)[0]), r.split(":", 1)[1]) for r in releases]
        cls.served = cls.td.get("SWUPD_TEST_WWW") or os.path.join(cls.td.get("DEPLOY_DIR_SWUPD", ""), "www")
        cls.httpd = None
        if str(cls.td.get("SWUPD_TEST_SERVE", "1")) != "0":
            handler = functools.partial(_Quiet, directory=cls.served)
            port = int(cls.td.get("SWUPD_TEST_PORT", "8000"))
            cls.httpd = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler)
            threading.Thread(target=cls.httpd.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        if cls.httpd:
            cls.httpd.shutdown()

    @classmethod
    def publish(cls, index):
        """Release `index` of SWUPD_TEST_RELEASES becomes what the server serves; returns its
        version, or None when the stream is served as it is."""
        if index >= len(cls.releases):
            return None
        version, tree = cls.releases[index]
        tmp = cls.served + ".next"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(tree, tmp)
        os.replace(tmp, cls.served)
        return version

    def run_ok(self, command, timeout=900):
        status, output = self.target.run(command, timeout=timeout)
        self.assertEqual(status, 0, f"{command}: {output}")
        return output

    def version(self):
        output = self.run_ok("sed -n 's/^VERSION_ID=//p' /usr/lib/os-release")
        return int(output.strip().strip('"'))

    def wait_for_ssh(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = self.target.run("true", timeout=20, ignore_ssh_fails=True)
            if status == 0:
                return
            time.sleep(3)
        self.fail(f"the device did not come back within {timeout} s")

    @OEHasPackage(["swupd-client"])
    def test_swupd_info(self):
        self.run_ok("swupd info")
        type(self).first = self.version()

    @OETestDepends(["swupd.SwupdTest.test_swupd_info"])
    def test_swupd_check_update(self):
        expected = self.publish(0)
        output = self.run_ok("swupd check-update")
        if expected is not None:
            self.assertIn(f"Latest server version: {expected}", output)

    @OETestDepends(["swupd.SwupdTest.test_swupd_check_update"])
    def test_swupd_update(self):
        type(self).kernel_before = self.run_ok("cat /proc/version").strip()
        output = self.run_ok("swupd update", timeout=1800)
        after = self.version()
        self.assertGreater(after, self.first, output)
        if self.releases:
            self.assertEqual(after, self.releases[0][0], output)
        type(self).updated = after

    @OETestDepends(["swupd.SwupdTest.test_swupd_update"])
    def test_swupd_reboot_into_the_update(self):
        """The update's kernel is the one that boots: the boot files follow the update."""
        self.target.run("systemctl reboot", timeout=30, ignore_ssh_fails=True)
        time.sleep(10)
        self.wait_for_ssh(int(self.td.get("SWUPD_TEST_BOOT_WAIT", "600")))
        self.assertEqual(self.version(), self.updated)
        kernel = self.run_ok("cat /proc/version").strip()
        if str(self.td.get("SWUPD_TEST_NEW_KERNEL", "1")) != "0":
            self.assertNotEqual(kernel, self.kernel_before, "the update's kernel did not boot")
        self.run_ok("test -d /usr/lib/modules/$(uname -r) || test -d /lib/modules/$(uname -r)")

    @OETestDepends(["swupd.SwupdTest.test_swupd_reboot_into_the_update"])
    def test_swupd_verify(self):
        output = self.run_ok("swupd verify", timeout=1800)
        self.assertIn("0 missing, 0 modified", output)

    @OETestDepends(["swupd.SwupdTest.test_swupd_verify"])
    def test_swupd_bundle_remove_and_add(self):
        installed = set(self.run_ok("swupd bundle-list --quiet").split()) - {"os-core"}
        every = set(self.run_ok("swupd bundle-list --all --quiet").split()) - {"os-core"}
        if not every:
            self.skipTest("the stream has no bundle but os-core")
        bundle = sorted(installed or every)[0]
        steps = ["bundle-remove", "bundle-add"] if installed else ["bundle-add", "bundle-remove"]
        for step in steps:
            self.run_ok(f"swupd {step} {bundle}", timeout=1800)
            now = set(self.run_ok("swupd bundle-list --quiet").split())
            self.assertEqual(bundle in now, step == "bundle-add", now)
            self.run_ok("swupd verify", timeout=1800)

    @OETestDepends(["swupd.SwupdTest.test_swupd_bundle_remove_and_add"])
    def test_swupd_autoupdate_timer(self):
        """`swupd autoupdate --enable`, then nothing but waiting: the timer updates the device."""
        expected = self.publish(1)
        if expected is None:
            self.skipTest("needs a later release to publish (SWUPD_TEST_RELEASES)")
        self.run_ok("swupd autoupdate --enable")
        try:
            deadline = time.monotonic() + int(self.td.get("SWUPD_TEST_TIMER_WAIT", "900"))
            while time.monotonic() < deadline and self.version() != expected:
                time.sleep(10)
            log = self.target.run("journalctl -u swupd-update.service --no-pager | tail -n 20")[1]
            self.assertEqual(self.version(), expected, log)
            # The timer's run is over once the version is recorded; verify then sees a whole tree.
            self.run_ok("while systemctl is-active -q swupd-update.service; do sleep 2; done", timeout=600)
            self.run_ok("swupd verify", timeout=1800)
        finally:
            self.target.run("swupd autoupdate --disable")

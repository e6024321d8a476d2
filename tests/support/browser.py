"""Headless Chromium driven through its DevTools protocol, to check pages as a browser renders them.

    with Chromium() as browser:
        page = browser.open("file:///.../format1.html")   # waits for the load event
        page.evaluate("document.title")
        page.errors                                        # console errors, uncaught exceptions
        page.screenshot(path, width, height)

Chromium is started with its own empty profile and `--remote-debugging-port=0`; the port it
picked is read from the profile's `DevToolsActivePort`, and each page is a tab of its own,
driven over a WebSocket (websocket-client). Every console message of level error, every failed
console.assert, every uncaught exception and every browser log entry of level error (a
resource that failed to load, a blocked request) lands in `errors`; warnings do not, since a
newer Chromium may warn of anything. `chromium_binary()` says where Debian's Chromium is.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket

CANDIDATES = ("chromium", "chromium-browser")


def chromium_binary() -> str | None:
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


class BrowserError(Exception):
    pass


class Page:
    def __init__(self, ws: websocket.WebSocket, timeout: float) -> None:
        self.ws = ws
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        self.errors: list[str] = []

    def _note(self, msg: dict) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            where = f"{entry.get('source')}, {entry.get('url', '')}"
            self.errors.append(f"log {entry['level']} ({where}): {entry.get('text')}")
        self.events.append(msg)

    def _receive(self, deadline: float) -> dict:
        self.ws.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            msg = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError("Chromium did not answer in time") from None
        if "id" not in msg:
            self._note(msg)
        return msg

    def call(self, method: str, **params) -> dict:
        n = next(self.ids)
        self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._receive(deadline)
            if msg.get("id") == n:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for msg in self.events:
            if msg.get("method") == event:
                return msg
        while True:
            msg = self._receive(deadline)
            if msg.get("method") == event:
                return msg

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (JSON-serialisable), evaluated in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: str, width: int, height: int) -> None:
        """A PNG of the page's top `width` x `height` pixels (CSS pixels, scale 1)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


class Chromium:
    def __init__(self, binary: str | None = None, timeout: float = 60) -> None:
        self.binary = binary or chromium_binary()
        if self.binary is None:
            raise BrowserError("Chromium is not installed")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.proc: subprocess.Popen | None = None
        self.pages: list[Page] = []

    def __enter__(self) -> Chromium:
        log = open(os.path.join(self.profile, "stderr.log"), "wb")
        args = [
            self.binary, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        try:
            self.port = self._port()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _port(self) -> int:
        active = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"Chromium exited with {self.proc.returncode}: {self.stderr()[-2000:]}")
            try:
                with open(active) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        raise BrowserError(f"Chromium did not open its DevTools port: {self.stderr()[-2000:]}")

    def stderr(self) -> str:
        with open(os.path.join(self.profile, "stderr.log"), errors="replace") as f:
            return f.read()

    def open(self, url: str) -> Page:
        """A page of its own at `url`, loaded (its load event fired)."""
        new = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(new, timeout=self.timeout) as r:
            target = json.load(r)
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True)
        page = Page(ws, self.timeout)
        self.pages.append(page)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.events.clear()
        nav = page.call("Page.navigate", url=url)
        if nav.get("errorText"):
            raise BrowserError(f"{url}: {nav['errorText']}")
        page.wait_for("Page.loadEventFired")
        return page

    def __exit__(self, *exc) -> None:
        for page in self.pages:
            page.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

"""One command's view of the server, the state directory and the target tree.

Fetches go through the transport, decisions about signed data through the trusted set, and
verified manifests are kept in the state directory so that later commands (verify, bundle-add,
search) can work from them, re-checking each against its signed MoM when it is read back. They
are kept parsed too (format/fastparse.py), and a new version of a bundle's manifest is parsed
against the one read before it (manifest.loads `like`): an update then parses only the lines
that changed.
"""

from __future__ import annotations

import contextlib
import os
import weakref

from swupd.format import compression, fastparse, layout, manifestdelta, osrelease
from swupd.format.errors import BundleError, NotFoundError, SizeLimitError, SwupdError, TreeIOError
from swupd.format.latest import Latest
from swupd.format.manifest import Entry, Manifest
from swupd.format.paths import MARKER_DIR, OS_CORE

from ..apply.tree import Tree
from ..config import Settings
from ..output import Output
from ..state import StateDir, write_atomic
from ..transport.fetcher import Fetcher
from ..trust.trusted import TrustedSet


class Session:
    def __init__(self, settings: Settings, state: StateDir, tree: Tree, fetcher: Fetcher, out: Output) -> None:
        self.s = settings
        self.state = state
        self.tree = tree
        self.fetcher = fetcher
        self.out = out
        self.trusted = TrustedSet(settings, state, self.current_version())
        self.trusted.keys.fetch = self._key_introduction
        self._moms: dict[int, Manifest] = {}
        # A bundle unchanged between two versions is one manifest: an update reads it once.
        # Held weakly, so dropping the manifests before a download still frees them.
        self._bundles: weakref.WeakValueDictionary[tuple[int, str, str], Manifest] = weakref.WeakValueDictionary()
        # The bytes of each bundle manifest read, while the manifest lives (see `_like`).
        self._texts: dict[tuple[str, int], tuple[weakref.ref[Manifest], bytes]] = {}
        self.run_scripts = True

    # -- what the device runs ------------------------------------------------------------
    def current_version(self) -> int:
        """VERSION_ID of the target's os-release (0 when there is none: an empty root)."""
        for path in osrelease.PATHS:
            try:
                text = self.tree.read(path, 64 * 1024).decode("utf-8", "replace")
            except (OSError, TreeIOError):
                continue
            version = osrelease.version_id(text)
            if version is not None:
                return version
        return 0

    def installed_bundles(self) -> set[str]:
        """Bundles whose marker file is present in the tree (os-core always counts)."""
        found = {OS_CORE}
        try:
            with self.tree.parent(f"{MARKER_DIR}/x") as (fd, _):
                found |= {n for n in os.listdir(fd) if not n.startswith(".")}
        except (OSError, TreeIOError):
            pass
        return found

    # -- signed metadata -----------------------------------------------------------------
    def _url(self, base: str, rel: str) -> str:
        return f"{base}/{rel}"

    def latest(self, allow_older: bool = False) -> Latest:
        rel = layout.latest(self.s.format)
        lim = self.s.limits
        data = self.fetcher.fetch_bytes(self._url(self.s.versionurl, rel), lim.max_latest_bytes)
        sig = self.fetcher.fetch_bytes(self._url(self.s.versionurl, layout.sig(rel)), lim.max_sig_bytes)
        return self.trusted.latest(data, sig, allow_older)

    def _key_introduction(self, kid: str) -> tuple[bytes, bytes]:
        """A signing key's introduction and its signatures (see trust/keys.py)."""
        rel, lim = layout.key_introduction(kid), self.s.limits
        data = self.fetcher.fetch_bytes(self._url(self.s.contenturl, rel), lim.max_key_bytes)
        return data, self.fetcher.fetch_bytes(self._url(self.s.contenturl, layout.sig(rel)), lim.max_sig_bytes)

    def mom(self, version: int, allow_older: bool = False) -> Manifest:
        if version in self._moms:
            return self._moms[version]
        cache = self.state.manifest_dir(version)
        cpath, spath = os.path.join(cache, layout.MOM), os.path.join(cache, layout.sig(layout.MOM))
        lim = self.s.limits
        mom = None
        if os.path.exists(cpath) and os.path.exists(spath):
            try:
                with open(cpath, "rb") as f, open(spath, "rb") as g:
                    mom = self.trusted.mom(version, f.read(lim.max_mom_bytes + 1), g.read(lim.max_sig_bytes + 1), True)
            except SwupdError:
                mom = None
        if mom is None:
            rel = layout.mom(version)
            data = self.fetcher.fetch_bytes(self._url(self.s.contenturl, rel), lim.max_mom_bytes)
            sig = self.fetcher.fetch_bytes(self._url(self.s.contenturl, layout.sig(rel)), lim.max_sig_bytes)
            mom = self.trusted.mom(version, data, sig, allow_older)
            write_atomic(spath, sig, durable=False)
            write_atomic(cpath, data, durable=False)
        self._moms[version] = mom
        return mom

    def manifest(self, entry: Entry) -> Manifest:
        """A bundle manifest as pinned by a verified MoM entry (from the cache when it matches)."""
        key = (entry.version, entry.path, entry.hash)
        m = self._bundles.get(key)
        if m is None:
            m = self._bundles[key] = self._read_manifest(entry)
        return m

    def _read_manifest(self, entry: Entry) -> Manifest:
        directory = self.state.manifest_dir(entry.version)
        cache = os.path.join(directory, f"Manifest.{entry.path}")
        kept = os.path.join(directory, "parsed", f"Manifest.{entry.path}")
        near = self._like(entry)
        like = near[1:] if near is not None else None
        loaded: list[Manifest] = []
        # Bound to the manifest's signed hash and to the limits it was checked against.
        stamp = f"{entry.hash} {self.s.limits!r}".encode()

        def parsed() -> Manifest | None:
            try:
                with open(kept, "rb") as f:
                    m = fastparse.kept_loads(f.read(), stamp)
            except OSError:
                return None
            if m is not None:
                loaded.append(m)
            return m

        m = None
        if os.path.exists(cache):
            try:
                with open(cache, "rb") as f:
                    data = f.read(entry.size + 1)
                m = self.trusted.manifest(entry, data, like, parsed)
            except SwupdError:
                m = None
                loaded.clear()
        if m is None:
            data = self._manifest_bytes(entry, near)
            m = self.trusted.manifest(entry, data, like)
            write_atomic(cache, data, durable=False)
        if not loaded:
            # Kept parsed for the commands after this one (the next update parses only the
            # lines that change, and this one's entries then come from here); only a cache,
            # so a full disk or a read-only state directory does not fail the command.
            with contextlib.suppress(OSError, SwupdError):
                os.makedirs(os.path.dirname(kept), mode=0o700, exist_ok=True)
                write_atomic(kept, fastparse.kept_dumps(m, stamp), durable=False)
        self._texts[(entry.path, entry.version)] = (weakref.ref(m), data)
        weakref.finalize(m, self._texts.pop, (entry.path, entry.version), None)
        return m

    def _like(self, entry: Entry) -> tuple[int, bytes, Manifest] | None:
        """Another version of the same bundle's manifest read by this command, with its version
        and bytes, while it is still in use (an update reads the installed one first)."""
        for (name, version), (ref, data) in self._texts.items():
            m = ref()
            if name == entry.path and version != entry.version and m is not None:
                return version, data, m
        return None

    def _manifest_bytes(self, entry: Entry, like: tuple[int, bytes, Manifest] | None) -> bytes:
        """A delta from the version `like` holds when the server has one (a few percent of the
        manifest), else the compressed manifest (a third of it), else the plain one; each
        capped by the size the MoM signs. A delta's result is checked against the MoM's hash
        here, so a bad one costs only the download of the whole manifest."""
        lim = self.s.limits
        if like is not None and like[0] < entry.version and manifestdelta.usable(len(like[1]), entry.size, lim):
            rel = layout.manifest_delta(entry.version, entry.path, like[0])
            try:
                cap = compression.max_compressed_size(entry.size)
                blob = self.fetcher.fetch_bytes(self._url(self.s.contenturl, rel), cap)
                data = manifestdelta.apply(like[1], blob, entry.size, lim)
                if self.trusted.pins(entry, data):
                    return data
                self.out.warning(f"{rel}: its result does not match the MoM; fetching the whole manifest")
            except NotFoundError:
                pass
            except SwupdError as e:
                self.out.warning(f"{rel}: {e}; fetching the whole manifest")
        try:
            blob = self.fetcher.fetch_bytes(
                self._url(self.s.contenturl, layout.manifest_zst(entry.version, entry.path)),
                compression.max_compressed_size(entry.size),
            )
        except NotFoundError:
            return self.fetcher.fetch_bytes(
                self._url(self.s.contenturl, layout.manifest(entry.version, entry.path)), entry.size
            )
        try:
            return compression.decompress(blob, entry.size)
        except SizeLimitError:
            raise SizeLimitError(f"Manifest.{entry.path} is larger than the MoM allows") from None

    def bundle_entry(self, mom: Manifest, name: str) -> Entry:
        e = mom.by_path().get(name)
        if e is None or not e.present:
            raise BundleError(f"bundle {name!r} does not exist in version {mom.version}")
        return e

    def closure(self, mom: Manifest, names: set[str]) -> dict[str, Manifest]:
        """The named bundles with everything they include, directly or not, and os-core."""
        todo = sorted(names | {OS_CORE})
        out: dict[str, Manifest] = {}
        while todo:
            name = todo.pop()
            if name in out:
                continue
            m = self.manifest(self.bundle_entry(mom, name))
            out[name] = m
            todo.extend(i for i in m.includes if i not in out)
        return out

    def installed_closure(self, mom: Manifest) -> dict[str, Manifest]:
        """Manifests of the installed bundles that exist in `mom` (plus their includes)."""
        present = {e.path for e in mom.entries if e.present}
        return self.closure(mom, {b for b in self.installed_bundles() if b in present})

    def exists(self, rel: str) -> int | None:
        try:
            return self.fetcher.size(self._url(self.s.contenturl, rel))
        except NotFoundError:
            return None

"""The `swupd` command: swupd's command names and habits, on this project's format.

Exit status: 0 success (also "already up to date"); `check-update`: 0 when an update is
available, 1 when not; `verify` without `--fix`: 1 when the tree differs from its manifests.
Configuration under /etc that the administrator changed is listed as `Config:`, apart from
`Missing:`, `Modified:` and `Extra:`; it is never repaired and does not make `verify` fail.
Errors: 2 usage (also a path in ROOT or the state directory that another user could change, see
ownership.py), 3 malformed data, 4 signature, 5 hash mismatch, 6 size limit, 7 rollback,
8 expired metadata, 9 wrong device (compat id or stream), 11 network, 12 missing on the server, 13 disk
full, 14 locked, 15 I/O error, 16 bundle problem, 130 interrupted, 141 standard output closed
by its reader (no message, as coreutils). Each error is one line on standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import NoReturn

from . import __version__, config, heap, ownership
from .apply import journal as jn
from .apply.tree import Tree
from .format import cmdline
from .format.durable import is_disk_full
from .format.errors import DiskFullError, SwupdError, TreeIOError, UsageError
from .output import Output, setup_logging
from .state import StateDir, write_atomic
from .transport.fetcher import Fetcher, NetConfig
from .transport.netconfig import ENV as NET_ENV
from .transport.netconfig import with_overrides

NO_SERVER = {"info", "bundle-list", "clean", "autoupdate", "mirror"}
# Commands that still answer while an interrupted transaction cannot be finished (disk full).
READ_ONLY = {"info", "bundle-list", "bundle-info", "search", "check-update"}


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _common(defaults: bool = True) -> argparse.ArgumentParser:
    """The global options. They are accepted before the command too: there they carry the
    defaults, and the command's copy (`defaults=False`) sets only what is given after it, which
    wins over the same option given before."""
    p = argparse.ArgumentParser(add_help=False, argument_default=None if defaults else argparse.SUPPRESS)
    g = p.add_argument_group("global options")
    g.add_argument(
        "--path", "-p", default="/" if defaults else argparse.SUPPRESS, metavar="ROOT", help="target root (default /)"
    )
    g.add_argument("--statedir", "-S", metavar="DIR", help="state directory (default ROOT/var/lib/swupd)")
    g.add_argument("--url", "-u", help="version and content URL")
    g.add_argument("--versionurl", "-v", help="version URL")
    g.add_argument("--contenturl", "-c", help="content URL")
    g.add_argument("--format", "-F", type=_positive, help="content format")
    g.add_argument("--key", "-K", action="append", metavar="PUBFILE", help="trusted public key (repeatable)")
    g.add_argument("--compat", help="compatibility id the content must carry")
    g.add_argument("--stream", help="stream identity the content must carry")
    g.add_argument("--json", action="store_true", help="machine-readable output, one JSON object per line")
    g.add_argument("--quiet", "-q", action="store_true", help="print only essential results")
    g.add_argument("--yes", "-y", action="store_true", help="assume yes for questions")
    g.add_argument("--no-scripts", "-N", action="store_true", help="do not run post-update hooks")
    g.add_argument("--verbose", action="store_true", help="also print each request, retry and decision")
    g.add_argument("--log-file", metavar="FILE", help="append everything --verbose shows, with times, to FILE")
    return p


def _parser() -> argparse.ArgumentParser:
    common = _common(defaults=False)
    p = argparse.ArgumentParser(
        prog="swupd",
        description="Safe, signed, delta-efficient OS updates.",
        parents=[_common()],
        epilog="Global options may be given before or after the command.",
    )
    p.add_argument("--version", action="version", version=f"swupd {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    u = cmd("update", "update the OS to the latest (or a given) version")
    u.add_argument("--version", "-V", dest="to_version", type=_positive, metavar="V", help="update to version V")
    u.add_argument("--download-only", "--download", action="store_true", help="fetch and verify, do not apply")
    cmd("check-update", "tell whether a newer version is available")
    v = cmd("verify", "compare the OS with its manifests")
    v.add_argument("--fix", action="store_true", help="restore missing and modified files")
    v.add_argument("--picky", action="store_true", help="also find (with --fix: remove) unknown files under /usr")
    v.add_argument("--bundles", "-B", help="comma-separated bundles to check (default: all installed)")
    r = cmd("repair", "restore the OS to its manifests (verify --fix)")
    r.add_argument("--picky", action="store_true", help="also remove unknown files under /usr")
    r.add_argument("--bundles", "-B", help="comma-separated bundles to repair (default: all installed)")
    i = cmd("os-install", "install a whole OS into an empty directory")
    i.add_argument("target", metavar="ROOT", nargs="?", help="empty directory to install into (or --path)")
    i.add_argument(
        "--version", "-V", dest="to_version", type=_positive, metavar="V", help="install version V (default: latest)"
    )
    i.add_argument("--bundles", "-B", default="", help="comma-separated bundles besides os-core")
    a = cmd("bundle-add", "install bundles")
    a.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle to install, with what it includes")
    rm = cmd("bundle-remove", "remove bundles")
    rm.add_argument(
        "bundles", nargs="+", metavar="BUNDLE", help="bundle to remove (not os-core, nor one another needs)"
    )
    ls = cmd("bundle-list", "list installed (or all) bundles")
    ls.add_argument("--all", "-a", action="store_true", help="every bundle the server offers, installed ones marked")
    bi = cmd("bundle-info", "show what a bundle holds")
    bi.add_argument("bundle", help="bundle name")
    s = cmd("search", "find which bundle provides a file")
    s.add_argument("term", metavar="TERM", help="part of a file name, a glob (*.conf), or part of a path (/bin/)")
    cmd("info", "show the installed version and configuration")
    c = cmd("clean", "remove cached downloads and objects")
    c.add_argument("--all", action="store_true", help="also the current version's manifests")
    au = cmd("autoupdate", "show, enable or disable automatic updates")
    g = au.add_mutually_exclusive_group()
    g.add_argument("--enable", action="store_true", help="install and start the daily update timer")
    g.add_argument("--disable", action="store_true", help="stop the timer")
    m = cmd("mirror", "use a mirror, or go back to the default URLs")
    g = m.add_mutually_exclusive_group(required=True)
    g.add_argument("--set", metavar="URL", help="fetch versions and content from URL")
    g.add_argument("--unset", action="store_true", help="go back to the configured URLs")
    return p


def _bundles(text: str | None) -> set[str] | None:
    return {b for b in text.split(",") if b} if text else None


def run(args: argparse.Namespace, out: Output) -> int:
    from .ops import bundles, misc, update, verify
    from .ops.session import Session
    from .ops.transaction import replay, run_hooks

    # Nothing in ROOT or the state directory is read before both have been resolved and checked
    # (ownership.py), nor anything in an os-install target before it is found empty.
    if args.command == "os-install":
        target = args.target or args.path
        if target == "/":
            raise UsageError("os-install needs a target directory other than /")
        root = update.prepare_target(target, args.statedir)
    else:
        root = ownership.resolve(args.path, "ROOT")
        if not os.path.isdir(root):
            raise UsageError(f"no such root: {args.path} is not a directory")
    statedir = ownership.resolve(args.statedir or os.path.join(root, "var/lib/swupd"), "state directory", False)
    fallback = "/" if args.command == "os-install" else None
    settings = config.load(
        root,
        statedir,
        args.url,
        args.versionurl,
        args.contenturl,
        args.format,
        args.key,
        args.compat,
        fallback,
        args.stream,
    )
    if args.command not in NO_SERVER:
        settings.require_server()
    state = StateDir(settings.statedir)
    state.lock()
    try:
        with Tree(settings.root) as tree, Fetcher(with_overrides(NetConfig(), os.environ.get(NET_ENV, ""))) as fetcher:
            sess = Session(settings, state, tree, fetcher, out)
            sess.run_scripts = not args.no_scripts
            pending = jn.pending(state)
            finished = None
            if pending is not None:
                out.info(f"Finishing an interrupted transaction to version {pending.version}")
                try:
                    replay(sess, pending)
                    finished = pending.version
                except SwupdError as e:
                    if args.command not in READ_ONLY:
                        raise
                    out.warning(f"an interrupted transaction cannot be finished yet: {e}")
            else:
                run_hooks(sess)
            return _dispatch(args, sess, out, bundles, misc, update, verify, finished)
    finally:
        state.unlock()


def _dispatch(args, sess, out, bundles, misc, update, verify, finished=None) -> int:
    c = args.command
    if c == "update":
        frm, to, rep = update.update(sess, args.to_version, args.download_only)
        if args.download_only:
            out.result(f"Downloaded what version {to} needs" if to != frm else f"Version {frm} is the latest")
        elif rep is None:
            out.result(f"System is up to date at version {frm}")
        else:
            out.info(update.summary(rep, sess.fetcher.received))
            out.result(f"Update successful: system updated from version {frm} to version {to}")
        return 0
    if c == "check-update":
        cur, latest = update.check_update(sess)
        out.info(f"Current OS version: {cur}")
        out.info(f"Latest server version: {latest}")
        if latest > cur:
            out.result(f"There is a new OS version available: {latest}")
            return 0
        out.result("There are no updates available")
        return 1
    if c in ("verify", "repair"):
        fix = c == "repair" or args.fix
        rep = verify.verify(sess, fix, args.picky, _bundles(args.bundles))
        fixed = bool(fix and rep.fixed)
        labels = (("Missing", rep.missing), ("Modified", rep.modified), ("Extra", rep.extra), ("Config", rep.config))
        if args.json:
            found = {label.lower(): paths for label, paths in labels}
            out.record({"version": rep.version, "checked": rep.checked, **found, "fixed": fixed})
        else:
            for label, paths in labels:
                for p in paths:
                    out.result(f"{label}: {p}")
            out.result(
                f"Checked {rep.checked} files of version {rep.version}: {len(rep.missing)} missing, "
                f"{len(rep.modified)} modified, {len(rep.extra)} extra"
                + (f", {len(rep.config)} configuration changed locally (kept)" if rep.config else "")
                + ("; all fixed" if fixed else "")
            )
        return 0 if (fix or rep.clean) else 1
    if c == "os-install":
        version, rep = update.os_install(sess, args.to_version, _bundles(args.bundles) or set(), finished)
        if rep is not None:
            out.info(update.summary(rep, sess.fetcher.received))
        for path in config.keep_installed(sess.s, _write_setting):
            out.info(f"Setting kept for the installed system: {path}")
        out.result(f"Installed version {version} into {sess.s.root}")
        return 0
    if c == "bundle-add":
        added, rep = bundles.bundle_add(sess, args.bundles)
        if rep is None:
            out.result("Nothing to do: already installed")
            return 0
        out.info(update.summary(rep, sess.fetcher.received))
        out.result(f"Successfully installed {len(added)} bundle(s): {', '.join(added)}")
        return 0
    if c == "bundle-remove":
        rep = bundles.bundle_remove(sess, args.bundles)
        out.result(f"Successfully removed {len(args.bundles)} bundle(s); {rep.removed} files deleted")
        return 0
    if c == "bundle-list":
        rows = bundles.bundle_list(sess, args.all)
        for r in rows:
            suffix = " (installed)" if args.all and r.installed and not args.quiet else ""
            out.result(f"{r.name}{suffix}")
        return 0
    if c == "bundle-info":
        data = bundles.bundle_info(sess, args.bundle)
        _print_dict(out, data, args.json)
        return 0
    if c == "search":
        hits = bundles.search(sess, args.term)
        for bundle, path in hits:
            out.result(f"{bundle}\t{path}")
        if not hits:
            out.info(f"No bundle provides {args.term}")
            return 1
        return 0
    if c == "info":
        _print_dict(out, misc.info(sess), args.json)
        return 0
    if c == "clean":
        files, size = misc.clean(sess, args.all)
        out.result(f"{files} files removed ({size} bytes)")
        return 0
    if c == "autoupdate":
        enabled = misc.autoupdate(sess, True if args.enable else False if args.disable else None)
        out.result("Automatic updates are " + ("enabled" if enabled else "disabled"))
        return 0 if enabled or args.disable else 1
    if c == "mirror":
        misc.mirror(sess, None if args.unset else args.set)
        out.result("Mirror unset" if args.unset else f"Mirror set to {args.set}")
        return 0
    raise UsageError(f"unknown command {c}")


def _print_dict(out: Output, data: dict, as_json: bool) -> None:
    if as_json:
        out.record(data)
        return
    for k, v in data.items():
        if isinstance(v, dict):
            out.result(f"{k}:")
            for name, value in v.items():
                out.result(f"  {name}: {value}")
        else:
            out.result(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}")


def main(argv: list[str] | None = None) -> int:
    heap.tune_malloc()
    args = cmdline.parse(_parser(), argv)
    out = Output(quiet=args.quiet, as_json=args.json)
    try:
        setup_logging(out, args.verbose, args.log_file)
    except OSError as e:
        out.error(f"cannot open log file {args.log_file}: {e.strerror}")
        return 2
    out.start(args.command)
    # Nothing the client makes (state, settings, units, directories) is ever open to group or
    # others, whatever umask it was started with: another user could change it, and the
    # client's own checks (ownership.py) would then refuse it.
    umask = os.umask(0o022)
    os.umask(umask | 0o022)
    try:
        status = run(args, out)
    except SwupdError as e:
        out.error(_as_root_hint(str(e)))
        status = e.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        status = 130
    except BrokenPipeError:
        # The reader went away (`swupd info | head -1`): quiet, as coreutils are.
        _silence_stdout()
        status = 141
    except OSError as e:
        out.error(_as_root_hint(f"{e.filename or ''}: {e.strerror}" if e.filename else str(e.strerror or e)))
        status = DiskFullError.exit_code if is_disk_full(e) else TreeIOError.exit_code
    finally:
        os.umask(umask)
    out.end(args.command, status)
    return status


def _write_setting(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    write_atomic(path, data)


_DENIED = ("Operation not permitted", "Permission denied")


def _as_root_hint(message: str) -> str:
    """A refusal by the kernel, for a user other than root, is most often just that."""
    if os.geteuid() != 0 and any(d in message for d in _DENIED):
        return f"{message} (swupd sets owners and writes system files: run it as root)"
    return message


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush meets no pipe."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def entry() -> NoReturn:
    """The `swupd` command: `main`, then out without tearing the interpreter down. Freeing an
    update's hundreds of thousands of objects one by one is time spent after the work is done
    (docs/benchmarks.md); the kernel takes the memory back at once. Every file the client
    writes is closed (and synced where it matters) before `main` returns; standard output and
    error are flushed here.
    Garbage collection is relaxed here too, for the command's process only, not for a program
    that calls `main`."""
    heap.relax_garbage_collection()
    status = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader has all it wanted: quiet, as coreutils are
        status = status or 141
    except OSError:
        status = status or 120
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    entry()

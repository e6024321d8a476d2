"""The `swupd-server` command.

Exit status: 0 success; 1 `check-bundles` found problems; 2 usage (options, the bundles file, a
version that is not above the published one, a key that did not sign the stream); 3 malformed
published data; 10 a root file system that cannot be published (device nodes, sockets,
FIFOs, unreadable files, ELF problems with `--strict`); 13 disk full; 14 another build holds
the stream's lock; 15 any other I/O error; 130 interrupted, 128+N stopped by signal N (143 for
SIGTERM). Each error is one line on standard error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

from swupd.format import cmdline, signing
from swupd.format.durable import is_disk_full
from swupd.format.errors import DiskFullError, SwupdError, TreeIOError, UsageError

from . import __version__
from .config import DEFAULT_EXPIRY_DAYS, DEFAULT_FORMAT, BuildConfig
from .progress import Progress


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text!r}")
    return int(text)


def _versions(text: str) -> list[int]:
    return [_positive(v) for v in text.replace(",", " ").split()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swupd-server", description="Build signed swupd update content.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("logging")
    g.add_argument("--verbose", action="store_true", help="print each stage as it ends, and what it did")
    g.add_argument("--log-file", metavar="FILE", help="append what --verbose shows, with times, to FILE")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    k = cmd("keygen", "make an Ed25519 signing key pair")
    k.add_argument("--private", required=True, metavar="KEYFILE", help="private key to create (mode 0600)")
    k.add_argument("--public", required=True, metavar="PUBFILE", help="public key to install on devices")

    pk = cmd("public-key", "write the public key of a private key file")
    pk.add_argument("--private", required=True, metavar="KEYFILE", help="private key file")
    pk.add_argument("--output", "-o", metavar="PUBFILE", help="file to write (default: standard output)")

    c = cmd("create-update", "build one version of update content into www/")
    c.add_argument("--www", required=True, help="the published tree; earlier versions in it are the history")
    c.add_argument("--rootfs", required=True, help="root file system of the new version")
    c.add_argument("--bundles", required=True, metavar="BUNDLES.toml", help="bundle definitions")
    c.add_argument("--version", required=True, type=_positive, dest="os_version", metavar="V", help="the new version")
    c.add_argument(
        "--signing-key",
        required=True,
        action="append",
        metavar="KEYFILE",
        help="private key; repeat to sign with several keys",
    )
    c.add_argument(
        "--rotate-key",
        action="append",
        default=[],
        metavar="OLD_KEYFILE",
        help="private key that signed the previous version: it introduces new --signing-key keys to devices",
    )
    c.add_argument("--format", type=_positive, default=DEFAULT_FORMAT, help="format number (default %(default)s)")
    c.add_argument("--compat", default="", metavar="ID", help="compatibility id devices check (the machine)")
    c.add_argument(
        "--stream",
        default="",
        metavar="ID",
        help="identity of the stream devices check (default: the one it has; a new stream's from its content)",
    )
    c.add_argument(
        "--change-stream",
        action="store_true",
        help="allow another stream identity or compat id than the previous version's",
    )
    g = c.add_mutually_exclusive_group()
    g.add_argument("--delta-versions", type=_versions, metavar='"10 20"', help="make delta packs from these versions")
    g.add_argument(
        "--deltas",
        type=int,
        default=2,
        metavar="K",
        help="make delta packs from the last K versions (default %(default)s)",
    )
    c.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    strict = "fail on ELF dependency problems and on bundle paths that match nothing, instead of warning"
    c.add_argument("--strict", action="store_true", help=strict)
    c.add_argument(
        "--expiry-days",
        type=_positive,
        default=DEFAULT_EXPIRY_DAYS,
        help="days until devices treat `latest` as stale (default %(default)s)",
    )
    c.add_argument("--fullfile-level", type=int, default=6, help="zstd level of fullfiles (default %(default)s)")
    c.add_argument("--cache-dir", default="", help="build cache (default: WWW.cache beside the tree)")

    b = cmd("check-bundles", "check that every ELF file of each bundle finds its libraries")
    b.add_argument("--rootfs", required=True, help="root file system to check")
    b.add_argument("--bundles", required=True, metavar="BUNDLES.toml", help="bundle definitions")
    b.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="worker processes (default: all cores)")

    r = cmd("report", "write a static HTML page per stream into WWW/report/")
    r.add_argument("--www", required=True, help="the published tree")
    r.add_argument("--output", help="directory for the pages (default WWW/report)")

    def pointer(p: argparse.ArgumentParser) -> None:
        """The options of a command that reads or writes `latest`."""
        p.add_argument("--www", required=True, help="the published tree")
        p.add_argument(
            "--format", type=_positive, default=DEFAULT_FORMAT, help="format of the pointer (default %(default)s)"
        )

    pointer(cmd("latest", "print the version `latest` names (0 when none is published)"))

    pr = cmd("prepare-rootfs", "write VERSION_ID, bundle markers and client settings into a rootfs")
    pr.add_argument("--rootfs", required=True, help="root file system of the image")
    pr.add_argument(
        "--version",
        type=_positive,
        dest="os_version",
        metavar="V",
        help="the image's version (default: VERSION_ID as it is)",
    )
    pr.add_argument("bundles", nargs="*", metavar="BUNDLE", help="optional bundles the image holds (os-core always)")
    g = pr.add_argument_group("the client's settings (written when any of these is given)")
    g.add_argument("--version-url", default="", metavar="URL", help="where devices find `latest`")
    g.add_argument("--content-url", default="", metavar="URL", help="where devices find the content")
    g.add_argument(
        "--format",
        type=_positive,
        dest="client_format",
        metavar="N",
        help=f"format devices follow (default {DEFAULT_FORMAT})",
    )
    g.add_argument("--compat", default="", metavar="ID", help="compatibility id devices check (the machine)")
    g.add_argument("--stream", default="", metavar="ID", help="identity of the stream devices check")
    g.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="PUBFILE",
        help="a key devices trust (repeatable); the image trusts these keys only",
    )

    s = cmd("refresh-latest", "re-sign `latest` with a new expiry, without a new version")
    pointer(s)
    s.add_argument(
        "--signing-key",
        required=True,
        action="append",
        metavar="KEYFILE",
        help="key that signed the stream (repeatable)",
    )
    s.add_argument("--expiry-days", type=_positive, default=DEFAULT_EXPIRY_DAYS, help="days until it is stale again")
    return p


def _keygen(args: argparse.Namespace) -> int:
    for path in (args.private, args.public):
        if os.path.exists(path):
            raise UsageError(f"{path} exists; refusing to overwrite a key")
    key = signing.generate()
    signing.write_private(key, args.private)
    with open(args.public, "wb") as f:
        f.write(key.public.dumps())
    print(f"key {key.public.keyid}: private {args.private}, public {args.public}")
    return 0


def _public_key(args: argparse.Namespace) -> int:
    data = signing.load_private(args.private).public.dumps()
    if args.output:
        with open(args.output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.write(data.decode())
    return 0


def _create(args: argparse.Namespace) -> int:
    from .pipeline import create_update

    cfg = BuildConfig(
        www=args.www,
        rootfs=args.rootfs,
        bundles_file=args.bundles,
        version=args.os_version,
        signing_keys=[signing.load_private(k) for k in args.signing_key],
        rotate_keys=[signing.load_private(k) for k in args.rotate_key],
        format=args.format,
        compat=args.compat,
        stream=args.stream,
        change_stream=args.change_stream,
        delta_versions=args.delta_versions,
        deltas=args.deltas,
        jobs=args.jobs,
        strict=args.strict,
        expiry_days=args.expiry_days,
        fullfile_level=args.fullfile_level,
        cache_dir=args.cache_dir,
        progress=Progress.for_terminal(),
    )
    print(create_update(cfg).text())
    return 0


def _check(args: argparse.Namespace) -> int:
    from . import bundles as bl
    from . import elfcheck, scan

    specs = bl.load(args.bundles)
    items = scan.scan(args.rootfs, args.jobs)
    problems = elfcheck.check(items, specs, bl.assign(specs, items), args.jobs)
    for p in problems:
        print(p.text())
    print(f"{len(problems)} problem(s) in {len(specs)} bundle(s)")
    return 1 if problems else 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    for page in write_report(args.www, args.output):
        print(page)
    return 0


def _latest(args: argparse.Namespace) -> int:
    from .publish import published

    record = published(args.www, args.format)
    print(record.version if record else 0)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from .image import ClientSettings, prepare

    client = ClientSettings(
        args.version_url, args.content_url, args.client_format, args.compat, args.stream, args.public_key
    )
    prepare(args.rootfs, args.os_version, args.bundles, client if client.given() else None)
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from swupd.format.latest import Latest

    from .config import build_timestamp
    from .history import History
    from .keys import check_signers
    from .publish import locked, published, write_latest
    from .sign import utc

    keys = [signing.load_private(k) for k in args.signing_key]
    missing = UsageError(f"no published version of format {args.format} in {args.www}")
    # Looked for before the lock, which would make a mistyped --www or write into another tree.
    if published(args.www, args.format) is None:
        raise missing
    with locked(args.www):
        old = published(args.www, args.format)
        if old is None:
            raise missing
        check_signers(History(args.www), old.version, keys)
        # Never below the published pointer (see format/latest.py), whatever SOURCE_DATE_EPOCH
        # says; the expiry counts from the time of signing.
        now = max(build_timestamp(), old.timestamp)
        expires = max(now, int(time.time())) + args.expiry_days * 86400
        record = Latest(old.version, args.format, now, expires, old.stream)
        write_latest(args.www, record, keys)
    print(f"latest of format {args.format} is {record.version}, expires {utc(record.expires)}")
    return 0


COMMANDS = {
    "keygen": _keygen,
    "public-key": _public_key,
    "create-update": _create,
    "check-bundles": _check,
    "report": _report,
    "latest": _latest,
    "prepare-rootfs": _prepare,
    "refresh-latest": _refresh,
}


class Stopped(BaseException):
    """SIGINT or SIGTERM reached the main process: unwind, so that the stage's workers are
    killed, the stage directory removed and the lock released on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: object) -> None:
    # The clean-up that follows is not to be interrupted by a second signal.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _setup_logging(verbose: bool, log_file: str | None) -> None:
    log = cmdline.logger("swupd_server", logging.INFO if verbose or log_file else logging.WARNING, log_file)
    if verbose:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("swupd-server: %(message)s"))
        log.addHandler(h)


def main(argv: list[str] | None = None) -> int:
    args = cmdline.parse(_parser(), argv)
    try:
        _setup_logging(args.verbose, args.log_file)
    except OSError as e:
        print(f"swupd-server: cannot open log file {args.log_file}: {e.strerror}", file=sys.stderr)
        return 2
    previous = {}
    try:
        try:
            for s in STOP_SIGNALS:
                previous[s] = signal.signal(s, _stop)
        except ValueError:
            pass  # not the main thread (an embedding program): signals stay as they are
        return COMMANDS[args.command](args)
    except SwupdError as e:
        print(f"swupd-server: {e}", file=sys.stderr)
        return e.exit_code
    except Stopped as e:
        print(f"swupd-server: stopped by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("swupd-server: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"swupd-server: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return DiskFullError.exit_code if is_disk_full(e) else TreeIOError.exit_code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())

"""`create-update`: the build stages in order, each returning its own small report."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field

from swupd.format import layout
from swupd.format.errors import BuildError, UsageError
from swupd.format.latest import check_compat, check_stream
from swupd.format.paths import marker

from . import (
    buildrecord,
    deltas,
    elfcheck,
    fullfiles,
    keys,
    manifestdeltas,
    manifests,
    packs,
    publish,
    scan,
    sign,
    streams,
)
from . import bundles as bl
from .config import BuildConfig
from .history import History

log = logging.getLogger("swupd_server")


@dataclass
class BuildReport:
    """What a build did, stage by stage, with the seconds each took."""

    version: int
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, name: str, started: float, summary: str) -> None:
        self.stages.append((name, time.monotonic() - started, summary))
        log.info("%s (%.2f s): %s", name, self.stages[-1][1], summary)

    def text(self) -> str:
        lines = [f"version {self.version}:"]
        lines += [f"  {name:<15} {secs:7.2f}s  {summary}" for name, secs, summary in self.stages]
        lines += [f"  warning: {w}" for w in self.warnings]
        total = sum(s for _, s, _ in self.stages)
        lines.append(f"  {'total':<15} {total:7.2f}s")
        return "\n".join(lines)


def create_update(cfg: BuildConfig) -> BuildReport:
    """Build version `cfg.version` of the stream in `cfg.www` from `cfg.rootfs`."""
    report = BuildReport(cfg.version)
    if not 0 < cfg.version <= cfg.limits.max_version:
        raise UsageError(f"version must be between 1 and {cfg.limits.max_version}")
    if not cfg.signing_keys:
        raise UsageError("a signing key is required")
    bundle_specs = bl.load(cfg.bundles_file)
    # Input errors, refused before www/ or its lock is made.
    if cfg.stream:
        check_stream(cfg.stream)
    if cfg.compat:
        check_compat(cfg.compat)
    with publish.locked(cfg.www):
        publish.remove_leftovers(cfg.www)
        history = History(cfg.www, cfg.cache_dir)
        highest = history.highest()
        if cfg.version <= highest:
            raise UsageError(f"version {cfg.version} is not above the latest published version {highest}")
        publish.check_order(cfg.www, cfg.format, (cfg.version, cfg.timestamp))
        newer = [f for f in history.formats() if f > cfg.format]
        if newer:
            # The last version of the older format is the one its devices move on from.
            raise UsageError(
                f"the stream has moved on to format {newer[-1]} (version {history.latest(newer[-1])}): "
                f"publish later versions with --format {newer[-1]}, see docs/format.md"
            )
        cfg.stream = streams.check(history, cfg)
        deltas.source_versions(history, cfg)
        # Checked before any work: a wrong key must not cost a whole build. In a rotation the
        # old keys sign this version too, so that devices verify it before they learn the new.
        key_plan = keys.plan(history, highest, cfg.signing_keys, cfg.rotate_keys)
        cfg.signing_keys = key_plan.signers

        t = time.monotonic()
        items = scan.scan(cfg.rootfs, cfg.jobs, cfg.cache("scan.cache"), cfg.progress)
        for path in bundle_specs.excluded(items):
            del items[path]
        scan.stamp_os_release(items, cfg.rootfs, cfg.version, cfg.timestamp)
        for name, spec in bundle_specs.items():
            path = marker(name)
            scan.add_generated(items, path, b"", cfg.timestamp)
            spec.patterns.append(path)
        claimed = bl.assign(bundle_specs, items)
        report.add("scan", t, f"{len(items)} objects in {cfg.rootfs}")
        empty = [f"bundle {n}: path {p!r} matches nothing in the rootfs" for n, p in bl.unmatched(bundle_specs, items)]
        if empty and cfg.strict:
            raise UsageError(f"{empty[0]}" + (f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""))
        report.warnings += empty

        t = time.monotonic()
        problems = elfcheck.check(items, bundle_specs, claimed, cfg.jobs, cfg.cache("elf.cache"), cfg.progress)
        report.warnings += elfcheck.grouped(problems)
        if problems and cfg.strict:
            raise BuildError(f"{len(problems)} ELF dependency problem(s); first: {problems[0].text()}")
        report.add("elf-check", t, f"{len(problems)} problem(s)")

        stage = publish.stage_dir(cfg.www, cfg.version)
        try:
            t = time.monotonic()
            mreport = manifests.build(items, bundle_specs, claimed, history, cfg)
            report.add("manifests", t, mreport.summary())
            t = time.monotonic()
            sreport = sign.build(mreport, stage, cfg, key_plan.introductions)
            report.add("sign", t, "; ".join(filter(None, [sreport.summary(), key_plan.summary()])))
            t = time.monotonic()
            freport = fullfiles.build(mreport, items, history, stage, cfg)
            report.add("fullfiles", t, freport.summary())
            t = time.monotonic()
            dreport = deltas.build(mreport, items, history, freport, stage, cfg)
            report.add("deltas", t, dreport.summary())
            t = time.monotonic()
            mdreport = manifestdeltas.build(mreport, dreport.sources, history, stage, cfg)
            report.add("manifest-deltas", t, mdreport.summary())
            t = time.monotonic()
            preport = packs.build(mreport, dreport, freport, history, stage, cfg)
            report.add("packs", t, preport.summary())
            # Before `latest`: every published version has its record (publish.remove_leftovers
            # drops the record of a version that was never published).
            record = buildrecord.make(cfg.version, problems, empty)
            publish.write_atomic(os.path.join(cfg.www, layout.build_record(cfg.version)), buildrecord.dumps(record))
            t = time.monotonic()
            pub = publish.publish(stage, cfg, sreport.latest)
            history.remember(layout.mom(cfg.version), mreport.mom_data, mreport.mom)
            for name, result in mreport.bundles.items():
                if result.written:
                    history.remember(layout.manifest(cfg.version, name), result.data, result.manifest)
            report.add("publish", t, pub.summary())
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return report

"""The build record: what the build of a version warned about, kept in `www/` for the report.

The build prints its warnings once; `swupd-server report` reads only the published tree (it may
run on any copy of it), so each build writes them beside its version as a small JSON file
(`layout.build_record`), which devices never fetch. It holds the ELF dependency problems,
grouped by bundle and missing library, and the build's other warnings. Its bytes depend only on
what the build found, so a reproducible build writes the same record.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from swupd.format import layout
from swupd.format.errors import FormatError

from .elfcheck import Problem, groups

RECORD_FORMAT = 1


@dataclass(frozen=True)
class ElfGroup:
    """The files of one bundle that need one library that the bundle cannot load."""

    bundle: str
    library: str
    files: int
    example: str  # one of those files
    found_in: str = ""  # where it is, outside the bundle and its includes
    elsewhere: str = ""  # a file of that name off the search path


@dataclass
class BuildRecord:
    version: int
    elf: list[ElfGroup] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def missing_libraries(self) -> list[str]:
        return sorted({g.library for g in self.elf})

    @property
    def elf_files(self) -> int:
        """Files with an ELF problem (a file missing two libraries counts twice)."""
        return sum(g.files for g in self.elf)


def make(version: int, problems: list[Problem], warnings: list[str]) -> BuildRecord:
    elf = [
        ElfGroup(ps[0].bundle, ps[0].needed, len(ps), ps[0].path, ps[0].found_in, ps[0].elsewhere)
        for ps in groups(problems)
    ]
    return BuildRecord(version, elf, list(warnings))


def dumps(record: BuildRecord) -> bytes:
    data = {
        "record": RECORD_FORMAT,
        "version": record.version,
        "elf": [vars(g) for g in record.elf],
        "warnings": record.warnings,
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def load(www: str, version: int) -> BuildRecord | None:
    """The record of a published version; None when it has none (built before records were
    kept). A record that is not one is malformed published data."""
    rel = layout.build_record(version)
    try:
        with open(os.path.join(www, rel), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FormatError(f"cannot read {rel} in {www}: {e.strerror}") from None
    try:
        doc = json.loads(data)
        if doc["record"] != RECORD_FORMAT or doc["version"] != version:
            raise ValueError(f"not the record of version {version}")
        elf = [ElfGroup(**g) for g in doc["elf"]]
        warnings = doc["warnings"]
        if not all(isinstance(w, str) for w in warnings) or not all(
            isinstance(g.files, int) and all(isinstance(v, str) for k, v in vars(g).items() if k != "files")
            for g in elf
        ):
            raise ValueError("wrong field types")
    except (ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{rel} in {www} is malformed: {e}") from None
    return BuildRecord(version, elf, warnings)

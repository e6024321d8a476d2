"""Makes the man pages and the bash and zsh completions of `swupd` and `swupd-server` from the
commands' own argument parsers, so that what they document is what the commands accept.

    scripts/gen-docs [--output DIR]

writes every file `outputs()` makes into the checkout, or below DIR, as the test that finds
drift does. A man page is argparse-manpage's rendering of the parser, with the sections
argparse has no place for (exit status, environment, files, see also) taken from
`<page>.sections` beside it, in argparse-manpage's include format; the completions are shtab's.
The output depends on nothing but the parsers, those files and the generators' versions, pinned
in scripts/requirements-dev.txt: no date, no host path, and no line wrapped to the terminal's
width (argparse's habit): man and the shells lay out the text themselves. Neither generator is
needed on a device, where the committed files are installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import shtab
from argparse_manpage.manpage import Manpage

TOP = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TOP / "client"), str(TOP / "server-lib")]

from swupd import __version__ as client_version  # noqa: E402
from swupd import cli as client_cli  # noqa: E402
from swupd_server import __version__ as server_version  # noqa: E402
from swupd_server import cli as server_cli  # noqa: E402

# What an option's value names (its metavar, else its name) tells the shells to offer.
DIRECTORIES = {"ROOT", "DIR", "WWW", "ROOTFS", "CACHE_DIR"}
FILES = {"FILE", "PUBFILE", "KEYFILE", "OLD_KEYFILE", "BUNDLES.toml"}


@dataclass(frozen=True)
class Command:
    name: str
    version: str
    parser: Callable[[], argparse.ArgumentParser]
    folder: str  # beside the package: client/ or server-lib/
    # A group of options every subcommand accepts, documented once at the top of the page
    # rather than again under each subcommand.
    shared_group: str | None = None

    def outputs(self) -> dict[str, str]:
        """Each generated file, relative to the checkout, and its text."""
        return {
            f"{self.folder}/man/{self.name}.1": self.manpage(),
            f"{self.folder}/completion/bash/{self.name}": shtab.complete(self.completable(), "bash"),
            f"{self.folder}/completion/zsh/_{self.name}": shtab.complete(self.completable(), "zsh"),
        }

    def completable(self) -> argparse.ArgumentParser:
        """The parser, its file and directory values marked for the shells."""
        parser = self.parser()
        for p in _parsers(parser):
            for action in p._actions:
                value = _value(action)
                if value in DIRECTORIES:
                    action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
                elif value in FILES:
                    action.complete = shtab.FILE  # type: ignore[attr-defined]
        return parser

    def manpage(self) -> str:
        parser = self.parser()
        for p in _parsers(parser):
            p.formatter_class = _Unwrapped
        sub = _subparsers(parser)
        # The commands after the options, as man pages have them.
        parser._action_groups.sort(key=lambda group: sub in group._group_actions)
        parser._action_groups[-1].title = "commands"
        # Each command's description is its help: said once, as the description (the library
        # would print the help line as it is, unescaped, above it).
        for choice in sub._choices_actions:
            choice.help = None
        if self.shared_group:
            for p in sub.choices.values():
                for group in p._action_groups:
                    if group.title == self.shared_group:
                        for action in group._group_actions:
                            action.help = argparse.SUPPRESS
        page = Manpage(parser, format="single-commands-section")
        description = parser.description or ""
        # A hyphen in the synopsis is a minus sign (roff's \-), so no line breaks inside an option.
        page.synopsis[1:] = [word.replace("-", "\\-") for word in page.synopsis[1:]]
        page.description = description[:1].lower() + description[1:].rstrip(".")
        page.date = ""
        page.source = f"{self.name} {self.version}"
        page.manual = "User Commands"
        page.parse_include(str(TOP / self.folder / "man" / f"{self.name}.sections"))
        generated = f'.\\" Made by scripts/gen-docs from the {self.name} command\'s parser: edit that, not this.\n'
        return generated + str(page)


class _Unwrapped(argparse.HelpFormatter):
    """Usage and help as single lines: man fills them to the reader's width."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=1_000_000)


def _value(action: argparse.Action) -> str | None:
    """What the value an option takes is called: its metavar, else its name."""
    if action.nargs == 0:
        return None
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [parser, *_subparsers(parser).choices.values()]


COMMANDS = (
    Command("swupd", client_version, client_cli._parser, "client", shared_group="global options"),
    Command("swupd-server", server_version, server_cli._parser, "server-lib"),
)


def outputs() -> dict[str, str]:
    """Every generated file of both commands, relative to the checkout."""
    named = {_value(a) for c in COMMANDS for p in _parsers(c.parser()) for a in p._actions}
    if unused := (DIRECTORIES | FILES) - named:
        raise SystemExit(f"gen-docs: no option takes {', '.join(sorted(unused))}: update DIRECTORIES and FILES")
    return {path: text for c in COMMANDS for path, text in c.outputs().items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gen-docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=TOP, help="write under this directory (default: the checkout)")
    args = ap.parse_args(argv)
    for rel, text in outputs().items():
        path = args.output / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"gen-docs: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

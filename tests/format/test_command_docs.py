"""The man pages and the bash and zsh completions of both commands: made from the argument
parsers by scripts/gen-docs, committed, and read by the real programs (man, bash, zsh)."""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from support.environment import unavailable
from support.netns import SetupError, _ensure
from swupd import cli as client_cli
from swupd_server import cli as server_cli

TOP = Path(__file__).resolve().parents[2]
GENERATOR = TOP / "scripts" / "gen_docs.py"
# command -> (its parser's module, its folder)
COMMANDS = {"swupd": (client_cli, "client"), "swupd-server": (server_cli, "server-lib")}


def _subcommands(prog: str) -> dict[str, argparse.ArgumentParser]:
    parser = COMMANDS[prog][0]._parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _generate(out: Path, **env: str) -> None:
    r = subprocess.run([sys.executable, GENERATOR, "--output", out], capture_output=True, text=True,
                       env={**os.environ, **env})  # fmt: skip
    assert r.returncode == 0, r.stderr


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_committed_pages_and_completions_are_what_the_parsers_make(tmp_path):
    _generate(tmp_path)
    made = _tree(tmp_path)
    assert len(made) == 6, sorted(made)
    committed = {}
    for folder in ("client", "server-lib"):
        for sub in ("man", "completion"):
            tree = _tree(TOP / folder / sub)
            committed |= {f"{folder}/{sub}/{rel}": data for rel, data in tree.items() if not rel.endswith(".sections")}
    drift = sorted(rel for rel in made.keys() | committed.keys() if made.get(rel) != committed.get(rel))
    assert not drift, f"{', '.join(drift)}: not what the parsers make; run scripts/gen-docs and commit the result"


def test_the_output_depends_on_neither_terminal_nor_clock_nor_hash_seed(tmp_path):
    _generate(tmp_path / "a", COLUMNS="40", SOURCE_DATE_EPOCH="0", TZ="UTC", PYTHONHASHSEED="1")
    _generate(tmp_path / "b", COLUMNS="250", SOURCE_DATE_EPOCH="2000000000", TZ="Asia/Tokyo", PYTHONHASHSEED="2")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    for rel, data in _tree(tmp_path / "a").items():
        assert str(TOP).encode() not in data and str(tmp_path).encode() not in data, rel


def _debian(binary: str, package: str) -> None:
    """`package` from Debian, installed when `binary` is missing and this test may (as root; CI
    runs so); else the test is skipped, or fails under CI=true."""
    try:
        _ensure(binary, package)
    except SetupError as e:
        unavailable(f"no {binary}: {e}")


def _man(prog: str) -> str:
    _debian("man", "man-db")
    page = TOP / COMMANDS[prog][1] / "man" / f"{prog}.1"
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", page], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # groff hyphenates long words at the end of a line (U+2010); the text is what matters here.
    return re.sub(r"\u2010\n\s*", "", r.stdout)


@pytest.mark.parametrize("prog", COMMANDS)
def test_the_man_page_renders_without_warnings_and_documents_every_command_and_option(prog):
    text = _man(prog)
    assert text.startswith(f"{prog.upper()}(1)")
    for name, sub in _subcommands(prog).items():
        assert re.search(rf"^ +{prog} {name}$", text, re.M), f"{prog} {name} has no part of the page"
        assert sub.description and sub.description in text, f"{prog} {name} has no description on the page"
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), f"{prog} {name} {option}"
    for heading in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"):
        assert re.search(rf"^{heading}$", text, re.M), heading


def _section(text: str, heading: str) -> str:
    return re.search(rf"^{heading}\n(.*?)(?=^[A-Z][A-Z ]+$)", text, re.M | re.S)[1]


@pytest.mark.parametrize("prog", COMMANDS)
def test_the_man_page_gives_the_exit_statuses_the_command_documents(prog):
    """The command's module docstring is where its exit statuses are defined beside the code."""
    doc = COMMANDS[prog][0].__doc__
    documented = set(re.findall(r"\b\d+\b", doc[doc.index("Exit status") :]))
    assert {"0", "2", "130"} <= documented
    assert set(re.findall(r"\b\d+\b", _section(_man(prog), "EXIT STATUS"))) == documented


def _bash_complete(prog: str, *words: str) -> list[str]:
    """COMPREPLY of the function bash's `complete` registered for `prog` once the completion file
    is sourced, for the command line `prog words...` with the cursor at the end of the last word."""
    script = TOP / COMMANDS[prog][1] / "completion" / "bash" / prog
    code = r"""
source "$1" || exit 1
spec=$(complete -p "$2") || exit 1
func=${spec##*-F }; func=${func%% *}
shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
"$func" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", code, "bash", script, prog, *words],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_bash_completes_the_client_s_commands_and_each_command_s_options(tmp_path):
    bundle_commands = {name for name in _subcommands("swupd") if name.startswith("bundle-")}
    assert bundle_commands == {"bundle-add", "bundle-info", "bundle-list", "bundle-remove"}
    assert set(_bash_complete("swupd", "bundle-")) == bundle_commands
    assert set(_bash_complete("swupd", "")) == set(_subcommands("swupd"))
    offered = set(_bash_complete("swupd", "update", "--"))
    assert {"--version", "--download-only", "--download", "--path", "--statedir", "--json"} <= offered
    assert "--fix" not in offered and "--all" not in offered
    assert _bash_complete("swupd", "verify", "--pi") == ["--picky"]
    # A value that names a directory is completed with directories only.
    (tmp_path / "rootdir").mkdir()
    (tmp_path / "rootfile").write_text("")
    assert _bash_complete("swupd", "--path", f"{tmp_path}/root") == [f"{tmp_path}/rootdir"]
    assert _bash_complete("swupd", "info", "--statedir", f"{tmp_path}/root") == [f"{tmp_path}/rootdir"]


def test_bash_completes_the_server_s_commands_and_options():
    assert set(_bash_complete("swupd-server", "")) == set(_subcommands("swupd-server"))
    assert _bash_complete("swupd-server", "create-update", "--sign") == ["--signing-key"]
    assert "--expiry-days" in _bash_complete("swupd-server", "refresh-latest", "--")


@pytest.fixture(scope="module")
def zsh() -> str:
    _debian("zsh", "zsh")
    return shutil.which("zsh")


def _zsh_complete(zsh: str, home: Path, line: str) -> str:
    """What an interactive zsh shows after `line` and a Tab, with compinit and the completion
    files in its fpath, on a terminal tall and wide enough for any list."""
    home.mkdir(exist_ok=True)
    fpath = " ".join(str(TOP / folder / "completion" / "zsh") for _, folder in COMMANDS.values())
    (home / ".zshrc").write_text(f"fpath=({fpath} $fpath)\nautoload -Uz compinit && compinit -u -D\nPS1='READY> '\n")
    pid, fd = pty.fork()
    if pid == 0:
        env = {"ZDOTDIR": str(home), "HOME": str(home), "TERM": "dumb", "PATH": "/usr/bin:/bin"}
        os.execve(zsh, ["zsh", "-i"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 500, 250, 0, 0))

    def read_until(pattern: bytes) -> bytes:
        seen, end = b"", time.monotonic() + 30
        while time.monotonic() < end and not re.search(pattern, seen):
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
        return seen

    try:
        assert b"READY> " in read_until(rb"READY> ")
        os.write(fd, line.encode() + b"\t")
        # Done when the line is drawn again under the list, or completed in place.
        shown = read_until(rb"\nREADY> " + re.escape(line.encode()) + rb"|" + re.escape(line.encode()) + rb"[!-~]")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", shown.decode(errors="replace"))


def test_zsh_completes_commands_options_and_directories(zsh, tmp_path):
    shown = _zsh_complete(zsh, tmp_path / "home", "swupd bundle-")
    listed = set(re.findall(r"^(bundle-\S+) +-- ", shown, re.M))
    assert listed == {"bundle-add", "bundle-info", "bundle-list", "bundle-remove"}, shown
    assert "-- install bundles" in shown
    shown = _zsh_complete(zsh, tmp_path / "home", "swupd update --")
    listed = set(re.findall(r"^(--[\w-]+)", shown, re.M))
    assert {"--version", "--download-only", "--path", "--json"} <= listed, shown
    assert "--fix" not in listed
    (tmp_path / "rootdir").mkdir()
    (tmp_path / "rootfile").write_text("")
    shown = _zsh_complete(zsh, tmp_path / "home", f"swupd --path {tmp_path}/root")
    assert f"{tmp_path}/rootdir/" in shown and "rootfile" not in shown, shown
    shown = _zsh_complete(zsh, tmp_path / "home", "swupd-server create-update --sign")
    assert "--signing-key" in shown, shown

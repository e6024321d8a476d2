"""Running a command on a pseudo-terminal, as a person at a terminal runs it: what only a
terminal gets (progress bars, line redraws) can then be read back and checked."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios


def run(
    cmd: list[str], cols: int = 120, rows: int = 40, env: dict[str, str] | None = None, stdout_too: bool = True
) -> tuple[int, str, str]:
    """Run `cmd` with standard error (and standard output, with `stdout_too`) on a terminal of
    `cols` x `rows` (0: one that does not know its size); (exit status, what it wrote to a
    separate standard output, what the terminal received)."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out = side if stdout_too else subprocess.PIPE
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=side, env=env)
    os.close(side)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    separate = p.stdout.read().decode() if p.stdout else ""
    return p.wait(timeout=120), separate, shown.decode(errors="replace")

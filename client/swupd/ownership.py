"""Whether a path can be changed by anyone but root (or the user the client runs as).

The client runs as root and acts on what it reads from ROOT (settings, keys, post-update hooks)
and from its state directory (journal, caches): whoever can change one of those, or rename
something in a directory above it, steers what root runs and moves. So before such a path is
used it is resolved here one component at a time from /, every directory and symlink met on
the way is checked, and the caller goes on with the resolved path only (a link it was given
may be retargeted afterwards, but the directories it resolved to are root's). Each component
must be owned by root or the euid and must not be writable by its group or others; the one
exception is a directory above the path that root owns with the sticky bit, such as /tmp,
where nobody can rename or remove another user's entries. A symlink's own mode means nothing;
its owner counts, since in a sticky directory its owner may replace it.
"""

from __future__ import annotations

import os
import stat

from swupd.format.errors import UnsafePathError

_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup


def trusted_owner(uid: int) -> bool:
    return uid == 0 or uid == os.geteuid()


def problem(st: os.stat_result, parent: bool = False) -> str:
    """Why an object with status `st` could be changed by another user ('' if it cannot);
    `parent`: it is a directory above the path checked, where root's sticky bit is enough."""
    if not trusted_owner(st.st_uid):
        return f"is owned by uid {st.st_uid}"
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return ""
    if parent and stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and st.st_mode & stat.S_ISVTX:
        return ""
    return "is writable by " + ("others" if st.st_mode & stat.S_IWOTH else "its group")


def refuse(what: str, path: str, where: str, why: str) -> UnsafePathError:
    at = "it" if where == path else where
    return UnsafePathError(f"refusing {what} {path}: {at} {why}")


def resolve(path: str, what: str, own_mode: bool = True) -> str:
    """The absolute path `path` names, with every symlink resolved, once / and each directory
    and link on the way have passed `problem`, and the path itself if it exists (its owner
    only, with `own_mode` False, for a caller that sets the mode itself). What does not exist
    yet is returned as named, for the caller to create."""
    given = os.path.abspath(path)
    todo = list(reversed(given.split("/")))
    done = "/"
    st = os.lstat("/")
    why = problem(st, parent=given != "/")
    if why:
        raise refuse(what, given, "/", why)
    links = 0
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        if name == "..":
            done = os.path.dirname(done)
            continue
        here = os.path.join(done, name)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            done = here  # nothing below it exists either, until ".." climbs back
            continue
        except NotADirectoryError:
            raise UnsafePathError(f"refusing {what} {given}: {done} is not a directory") from None
        except OSError as e:
            raise UnsafePathError(f"refusing {what} {given}: cannot examine {here}: {e.strerror}") from None
        last = not any(n not in ("", ".") for n in todo)
        why = problem(st, parent=not last or stat.S_ISLNK(st.st_mode))
        if why and (own_mode or not last or not trusted_owner(st.st_uid)):
            raise refuse(what, given, here, why)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise UnsafePathError(f"refusing {what} {given}: too many symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                done = "/"
            todo.extend(reversed(target.split("/")))
            continue
        done = here
    # The path itself once more, as itself: a trailing ".." may have led back to a directory
    # first met as a parent.
    try:
        st = os.lstat(done)
    except FileNotFoundError:
        return done
    why = problem(st)
    if why and (own_mode or not trusted_owner(st.st_uid)):
        raise refuse(what, given, done, why)
    return done


def make_dirs(path: str, mode: int, parents: int = 0o755, what: str = "directory") -> None:
    """Create `path` (already resolved) and any missing directory above it: the last with
    `mode`, the others with `parents`, never more open whatever the umask. What was missing
    when `path` was resolved may have been made since by another user, in a sticky directory
    such as /tmp: so when anything was made, the path is resolved and checked once more."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    for p in reversed(missing):
        want = mode if p == path else parents
        try:
            os.mkdir(p, want & 0o700)
        except FileExistsError:
            continue
        os.chmod(p, want)
    if missing and resolve(path, what, own_mode=False) != path:
        raise UnsafePathError(f"refusing {what} {path}: it changed while it was made")

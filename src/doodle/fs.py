"""File-system safety shared by the stages that write: locks, atomic folder replacement, up-front
write checks and the clean-up of temporaries a killed process left behind.

Every writer in doodle builds its output under a temporary name and renames it into place, so a
crash never leaves a valid-looking partial file. What that leaves open is handled here:

* two processes writing one output (`exclusive_lock`): the second fails at once with one line;
* replacing an existing folder (`replace_folder`): the old one stays whole until the new one is,
  swapped in one atomic `renameat2(RENAME_EXCHANGE)` where Linux offers it, else by two renames
  that `recover_replaced` completes if a kill falls between them;
* an output that cannot be written (`check_writable`): refused before any work is done;
* temporaries of processes that died (`remove_stale_temporaries`): removed on the next start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from doodle.errors import DoodleError

log = logging.getLogger(__name__)

OLD_SUFFIX = ".old"
"""The previous version of a folder, kept while its replacement is renamed into place."""
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_TMP_PID = re.compile(r"\.tmp(\d+)$")


# -- locks ----------------------------------------------------------------------------------------


def lock_path(out: Path) -> Path:
    """The lock file guarding `out` (a hidden file beside it, so it never lands inside a store)."""
    return out.with_name(f".{out.name}.lock")


@contextmanager
def exclusive_lock(out: str | os.PathLike[str], what: str = "written") -> Iterator[None]:
    """Hold an exclusive lock on `out` for the block, or raise DoodleError naming the holder.

    Advisory (`flock`): it guards doodle against itself, two `prepare` runs into one store. The
    lock file is removed on exit; a lock whose file was replaced while waiting is taken again, so
    two processes never both believe they hold it.
    """
    import fcntl

    path = lock_path(Path(out))
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DoodleError(f"{out} is being {what} by another doodle process (pid {holder}); "
                              f"wait for it or choose another output") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the holder removed the file between our open and flock: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


# -- replacing a folder -----------------------------------------------------------------------------


def replace_folder(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out`, removing what `out` held only once `new` is there."""
    if not out.exists():
        os.rename(new, out)
        return
    if _exchange(new, out):  # one atomic step: `out` is the new folder, `new` now holds the old one
        shutil.rmtree(new)
        return
    old = out.with_name(out.name + OLD_SUFFIX)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    os.rename(new, out)  # a kill before this line leaves `old` whole: `recover_replaced` restores it
    shutil.rmtree(old)


def recover_replaced(out: Path) -> None:
    """Finish or undo a `replace_folder` that a kill interrupted between its two renames."""
    old = out.with_name(out.name + OLD_SUFFIX)
    if not old.is_dir():
        return
    if out.exists():
        shutil.rmtree(old)  # the new folder made it into place: the old one is garbage
    else:
        log.warning("restoring %s from %s (an earlier replacement was interrupted)", out, old)
        os.rename(old, out)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux's renameat2(RENAME_EXCHANGE); False where unsupported."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EXDEV):
        return False  # an old kernel, or a file system without exchange
    raise OSError(err, os.strerror(err), str(b))


def _renameat2():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    func = getattr(ctypes.CDLL(name, use_errno=True), "renameat2", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


# -- up-front checks ------------------------------------------------------------------------------


def check_writable(folder: str | os.PathLike[str], option: str = "--out", shown: str | None = None) -> None:
    """Raise DoodleError unless files can be created in `folder` (or in the nearest existing parent
    it would be created under): found out before the work, not after it. The message names the
    option and `shown` (default: `folder`), the user's own words.

    A real probe file, not `os.access`, which says yes to root on a read-only mount.
    """
    target = Path(folder)
    label = f"{option} {shown or target}"
    existing = target
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise DoodleError(f"{label}: {existing} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".doodle-write-check-"):
            pass
    except OSError as err:
        raise DoodleError(f"{label}: cannot write in {existing} ({err.strerror or err})") from None


# -- stale temporaries ----------------------------------------------------------------------------


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: str = ".*.tmp*") -> list[Path]:
    """Remove `folder`'s temporaries named `*.tmpPID` whose writer (PID) is no longer running.

    `atomic_save` and the submission writer name their temporaries so; a kill -9 mid-write leaves
    one behind (a checkpoint's is as large as the model). Returns the files removed.
    """
    removed = []
    for path in sorted(Path(folder).glob(pattern)):
        match = _TMP_PID.search(path.name)
        if match and path.is_file() and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True

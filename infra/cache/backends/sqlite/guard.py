"""What keeps the SQLite store safe and bounded (issue 17 items 7, 9, 10), apart from the store itself.

* ``secure_paths``: the 0700 directory / 0600 files promise holds for paths that already exist: modes are
  tightened on what this user owns; a symlink, a non-regular file, or a path another user owns (where we
  could not tighten it, or someone else could swap it) is refused with a clear ``CacheError``. A loose
  directory is tightened only when it holds nothing but the store's own files (``cache.db*``): a cache
  pointed at a shared folder (``path: "cache.db"`` in a project directory) is refused, never chmod-ed.
* ``lock_within``: the writers' ``flock`` taken within the store budget. The uncontended case is one
  non-blocking call; a contended one polls with short sleeps (50 µs doubling to 1 ms: a writer holds the lock
  for one statement, so the next one gets it within about a millisecond of its release) until the budget is
  spent. A blocking ``flock`` can't time out, and a stopped or hung peer would hold every caller forever.
* ``DiskGuard``: the store stops growing while the file system's free space is under a floor (10 % of the
  file system, at most 256 MiB): writes are skipped, counted, and logged once per shortage.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time

from infra.errors import CacheError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DiskGuard", "lock_within", "secure_paths"]

log = logging.getLogger("infra.cache")

#: the store's side files: SQLite's WAL and shared memory, and our writers' lock
SIDE_FILES = ("-wal", "-shm", ".lock")
#: free-space floor: this share of the file system, but never more than ``MAX_FLOOR`` bytes
FLOOR_SHARE = 0.10
MAX_FLOOR = 256 * 1024**2
#: free space is re-read at least this often (other programs fill disks too), and sooner once our own
#: writes may have used a quarter of the headroom the last reading left
RECHECK_SECONDS = 1.0


# ---------------------------------------------------------------------------------- permissions
def _refuse(path: str, why: str) -> CacheError:
    return CacheError(f"refusing the cache path {path!r}: {why}")


def _tighten(path: str, st: os.stat_result, mode: int, what: str, store: str | None = None) -> None:
    if stat.S_IMODE(st.st_mode) & ~mode == 0:
        return
    if store is not None:
        others = sorted(n for n in os.listdir(path) if not n.startswith(store))
        if others:
            raise _refuse(
                path,
                f"the directory has mode {stat.S_IMODE(st.st_mode):04o} and holds other files too "
                f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}): others could read or "
                "replace cached values; give the cache a directory of its own (the default is .perf_cache/)",
            )
    if st.st_uid != os.geteuid():
        raise _refuse(
            path,
            f"the {what} has mode {stat.S_IMODE(st.st_mode):04o} and belongs to uid {st.st_uid}, not to us "
            f"(uid {os.geteuid()}): others could read or replace cached values; use a {what} of your own",
        )
    try:
        os.chmod(path, mode)  # (lstat said: not a symlink)
    except OSError as exc:
        raise _refuse(
            path, f"can't tighten the {what}'s mode {stat.S_IMODE(st.st_mode):04o} to {mode:04o}: {exc}"
        ) from exc
    log.warning("cache %s %s had mode %04o; tightened to %04o", what, path, stat.S_IMODE(st.st_mode), mode)


def secure_paths(path: str) -> None:
    """Create the directory 0700 if missing; tighten or refuse an existing directory, database and side
    files (see the module docstring). Creates an empty database file 0600 (never through a symlink)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    _tighten(directory, st, 0o700, "directory", store=os.path.basename(path))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    for p, what in ((path, "database"), *((path + s, "database side file") for s in SIDE_FILES)):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(p, f"the {what} is a symbolic link (to {os.readlink(p)!r}); SQLite would follow it")
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(p, f"the {what} is not a regular file")
        _tighten(p, st, 0o600, what)


# ---------------------------------------------------------------------------------- the writers' lock
def lock_within(fd: int, budget: float) -> bool:
    """Take an exclusive ``flock`` on ``fd`` within ``budget`` seconds; False if it stayed held."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    deadline = time.monotonic() + budget
    delay = 0.00005
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.001)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue


# ---------------------------------------------------------------------------------- free disk space
class DiskGuard:
    """Says whether the store may grow by a write; counts the writes it refused (``skipped``)."""

    __slots__ = ("_budget", "_directory", "_lock", "_next", "_short", "floor", "headroom", "skipped")

    def __init__(self, directory: str, floor: int | None = None) -> None:
        self._directory = directory
        self.floor = floor
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next reading
        self._budget = 0  # bytes we may still write before the next reading
        self._short = False
        self.skipped = 0
        #: free bytes over the floor at the last reading (the WAL is checkpointed well before it eats this)
        self.headroom = 1 << 62

    def _read(self) -> None:
        try:
            st = os.statvfs(self._directory)
        except OSError:
            self._budget, self._short = 1 << 62, False  # can't tell: don't stop the cache for it
            return
        free = st.f_bavail * st.f_frsize
        floor = (
            self.floor
            if self.floor is not None
            else min(MAX_FLOOR, int(st.f_blocks * st.f_frsize * FLOOR_SHARE))
        )
        was = self._short
        self._short = free < floor
        self.headroom = max(0, free - floor)
        # a quarter of the headroom: the WAL holds a second copy of each page until a checkpoint
        self._budget = max(0, (free - floor) // 4)
        if self._short and not was:
            log.warning(
                "cache directory %s: %d bytes free, under the %d byte floor; the cache stops growing "
                "(writes are skipped and counted) until space is freed",
                self._directory,
                free,
                floor,
            )
        elif was and not self._short:
            log.warning(
                "cache directory %s: free space is back over the floor; the cache grows again",
                self._directory,
            )

    @property
    def short(self) -> bool:
        """Free space was under the floor at the last reading."""
        return self._short

    def allow(self, size: int) -> bool:
        """Whether a write of about ``size`` bytes may go ahead; False (counted) while space is short."""
        now = time.monotonic()
        if now >= self._next or size > self._budget:
            with self._lock:
                self._read()
                self._next = now + RECHECK_SECONDS
        if self._short:
            self.skipped += 1
            return False
        self._budget -= size
        return True

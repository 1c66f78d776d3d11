"""One output folder, one run: a lock file in the output folder.

Two training runs writing the same folder delete each other's checkpoints and leave
results of one model next to the weights of the other. ``RunLock`` creates
``<folder>/run.lock`` (pid, host, start time) with an exclusive create; a second run
refuses with a message naming the holder. The lock of a process that no longer runs
(same host, pid gone, or the pid now belongs to a process started later) is stale: it is
taken over with a warning, so that the same command resumes after a crash or ``kill -9``.
With torchrun only the main process takes the lock; the other ranks of the run share it.
"""

import atexit
import json
import logging
import os
import socket
import time

logger = logging.getLogger(__name__)
LOCK_NAME = "run.lock"


class RunLockError(RuntimeError):
    """The output folder is in use by another live run."""


def process_start(pid):
    """Start time of ``pid`` in clock ticks since boot (Linux /proc), or None: tells a
    live holder from a newer process that reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """``RunLock(folder).acquire()`` takes the lock or raises RunLockError;
    ``release()`` (also at exit) removes it if this process holds it."""

    def __init__(self, folder, name=LOCK_NAME):
        self.path = os.path.join(folder, name)
        self.held = False

    def describe(self):
        return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": process_start(os.getpid()),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}

    def read(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None  # vanished, or half-written by a process killed while writing it

    def is_stale(self, holder):
        """True if the holder certainly no longer runs (only decidable on its own host)."""
        if holder is None:
            return True
        if holder.get("host") != socket.gethostname():
            return False
        pid = int(holder.get("pid", -1))
        if pid <= 0 or not pid_alive(pid):
            return True
        start = holder.get("proc_start")
        return start is not None and process_start(pid) not in (None, start)  # pid reused

    def acquire(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.read()
                if not self.is_stale(holder):
                    raise RunLockError(self.message(holder)) from None
                logger.warning("taking over the stale lock %s of a run that no longer runs (%s)",
                               self.path, holder)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.describe(), f)
            self.held = True
            atexit.register(self.release)
            return self
        raise RunLockError(f"could not take the lock {self.path} (another run keeps taking it)")

    def message(self, holder):
        return (f"the output folder {os.path.dirname(self.path)} is in use by another run: "
                f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
                f"(lock file {self.path}). Wait for it to finish or choose another --output_folder; "
                "if that process is certainly gone (e.g. on another machine), delete the lock file.")

    def release(self):
        if not self.held:
            return
        holder = self.read()
        if holder is not None and holder.get("pid") == os.getpid():
            os.remove(self.path)
        self.held = False


def lock_output_folder(folder):
    """The main process locks ``folder`` (raises RunLockError if a live run holds it);
    other torchrun ranks of the same run return None without touching it."""
    from speechbrain.utils.distributed import get_rank

    if (get_rank() or 0) != 0:
        return None
    return RunLock(folder).acquire()

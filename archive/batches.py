"""What a process gathers to send later in one go: a round trip per item costs more
than the item. A thread of the process's own sends the batch every few seconds, and
the process sends what is left when it exits, so a crash loses at most one
interval's worth. A forked child inherits its parent's batch but not its thread: the
first item it adds starts one of its own."""

import atexit
import contextlib
import os
import threading


class ProcessBatch:
    def __init__(self, name, send, seconds, empty=list, rest=None):
        """`send(batch)` is called with what was gathered (`empty()` to start with),
        every `seconds()` seconds, never with an empty batch; the thread calls `rest()`
        after each pass (to give back what it holds between two: a database connection)."""
        self.name = name
        self.send = send
        self.seconds = seconds
        self.empty = empty
        self.rest = rest
        self._items = empty()
        self._lock = threading.Lock()
        self._pid = None

    @contextlib.contextmanager
    def adding(self):
        """The batch, to add to while no one else does."""
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            yield self._items

    def flush(self):
        """Send what was gathered, now."""
        with self._lock:
            batch, self._items = self._items, self.empty()
        if batch:
            self.send(batch)

    def discard(self):
        with self._lock:
            self._items = self.empty()

    def _start(self):
        self._pid = os.getpid()
        threading.Thread(target=self._flush_forever, name=self.name, daemon=True).start()
        atexit.register(self.flush)

    def _flush_forever(self):
        pid = os.getpid()
        while os.getpid() == pid:
            # At least a tenth of a second: an interval set to 0 meanwhile (nothing is
            # gathered then) must not turn the thread into a busy loop.
            threading.Event().wait(max(self.seconds(), 0.1))
            try:
                self.flush()
            finally:
                if self.rest is not None:
                    self.rest()

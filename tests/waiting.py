"""The one way a test waits: poll for a condition, with a generous deadline.

A test never sleeps to let something happen: on a fast machine the thing has
happened long before, on a loaded one not yet. It names the condition it needs
and waits for it; the deadline only bounds a failure.
"""

import time


def wait_for(condition, timeout=60, interval=0.1, what="condition"):
    """Poll until condition() returns a true value, and return that value; a
    connection refused meanwhile counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(interval)


def wait_seconds_passed(since, seconds):
    """Wait until `seconds` have passed since the monotonic instant `since`: for
    conditions that are a duration by definition (a heartbeat or a TTL expiring),
    where the code under test counts time too."""
    wait_for(lambda: time.monotonic() - since >= seconds, timeout=seconds + 60, interval=0.05,
             what=f"{seconds} s elapsed")

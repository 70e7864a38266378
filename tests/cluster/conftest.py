"""Several nodes of one cluster, as real processes on loopback."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from pynetdicom import AE, StoragePresentationContexts



@pytest.fixture
def node_factory(server_factory):
    """node_factory(n, **settings): n nodes of one cluster (same database, storage,
    queues), named node1..node<n>."""

    def start(count, **settings):
        first = server_factory("node1", PACS_NODE_NAME="node1", workers=1, **settings)
        # The others join its database and start together: a start is mostly waiting
        # for Python to import Django, which two cores do two at a time.
        with ThreadPoolExecutor(max(1, count - 1)) as pool:
            others = pool.map(lambda i: server_factory(f"node{i}", join=first, PACS_NODE_NAME=f"node{i}", workers=1,
                                                       **settings), range(2, count + 1))
            return [first, *others]

    return start


def c_store(port, datasets, calling="LOADER"):
    """C-STORE the datasets over one association; the SOP Instance UIDs acknowledged with success."""
    ae = AE(ae_title=calling)
    ae.requested_contexts = StoragePresentationContexts[:100]
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="PACSWEB")
    stored = []
    if not assoc.is_established:
        return stored
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if status and status.Status == 0x0000:
                stored.append(ds.SOPInstanceUID)
    finally:
        if assoc.is_established:
            assoc.release()
    return stored


class Load:
    """Threads sending requests until stop(); they count what succeeded and failed."""

    def __init__(self):
        self.halt = threading.Event()
        self.threads = []
        self.failures = []
        self.lock = threading.Lock()
        self.counts = {}

    def run(self, name, action):
        def loop():
            n = 0
            while not self.halt.is_set():
                try:
                    ok, detail = action(n)
                except Exception as error:  # a refused connection is a failed request too
                    ok, detail = False, repr(error)
                with self.lock:
                    self.counts[name] = self.counts.get(name, 0) + 1
                    if not ok:
                        self.failures.append((name, n, detail))
                n += 1

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self):
        self.halt.set()
        for thread in self.threads:
            thread.join(120)

"""On SQLite (no pool) an association keeps its thread's connection between its
C-STOREs and the connection closes with the association: many associations do not
pile up open database files."""

import os

from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.dicomgen import make_instance, uid


def _database_files(pid):
    names = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            names.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return [name for name in names if "sqlite" in name]


def test_associations_on_sqlite_do_not_pile_up_connections(server_factory, listener_factory):
    import io

    server = server_factory(database="sqlite")
    listener = listener_factory(server)
    ae = AE(ae_title="LOADER")
    ae.add_requested_context(CTImageStorage)
    stored = 0
    for association in range(30):
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="PACSWEB")
        assert assoc.is_established
        for n in range(2):
            dataset = dcmread(io.BytesIO(make_instance(sop_uid=uid("sqlite-conn", association, n))))
            stored += assoc.send_c_store(dataset).Status == 0x0000
        assoc.release()
    assert stored == 60
    # The database, its WAL and shared memory for a connection or two: not one per association.
    assert len(_database_files(listener.process.pid)) <= 6

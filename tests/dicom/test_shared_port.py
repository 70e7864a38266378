"""Several listener processes of one node share one port (what `make run` starts)."""

import io

import pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests import servers
from tests.dicomgen import make_instance, uid


def test_listeners_on_one_port_share_the_associations(server_factory, listener_factory):
    server = server_factory()
    first = listener_factory(server)
    second = listener_factory(server, port=first.port)  # binds: SO_REUSEPORT
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage)
    sent = []
    for n in range(24):
        data = make_instance(patient_id="SHARED", sop_uid=uid("shared-port", n), instance_number=n + 1, rows=8, columns=8)
        assoc = ae.associate("127.0.0.1", first.port)
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(io.BytesIO(data))).Status == 0x0000
        assoc.release()
        sent.append(n)
    assert server.sql("SELECT count(*) FROM instance") == [(len(sent),)]
    # The kernel spread the associations: both processes served some.
    assert "association established" in first.output()
    assert "association established" in second.output()
    status, _ = servers.request_json(server.url + "/statistics")
    assert status == 200

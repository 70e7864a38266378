"""Storage Commitment SCP: a pynetdicom modality asks the archive to commit to
what it sent; the Storage Commitment Result (N-EVENT-REPORT) comes back on the
modality's association when it waits for it there, else on an association the
archive opens to the modality's own SCP, and lists each instance."""

import io
import json
import threading

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StorageCommitmentPushModel

from tests import servers
from tests.dicom.conftest import association, post_zip
from tests.dicomgen import make_instance, uid
from tests.waiting import wait_for

COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def study(tag, count=10):
    return [make_instance(patient_id=f"P-{tag}", study_uid=uid(tag, "study"), sop_uid=uid(tag, "sop", n),
                          instance_number=n + 1) for n in range(count)]


def commitment_request(transaction_uid, sop_uids):
    information = Dataset()
    information.TransactionUID = transaction_uid
    references = []
    for sop_uid in sop_uids:
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = sop_uid
        references.append(item)
    information.ReferencedSOPSequence = references
    return information


class Reports:
    """The N-EVENT-REPORTs a modality receives: (association, event type, event information)."""

    def __init__(self):
        self.received = []
        self.lock = threading.Lock()

    def handle(self, event):
        with self.lock:
            self.received.append((event.assoc, event.request.EventTypeID, event.event_information))
        return 0x0000, None

    def wait(self, count=1):
        return wait_for(lambda: len(self.received) >= count and self.received[:count], what="the commitment report")


def assert_ten_committed_and_one_failed(report, transaction_uid, stored, unknown):
    _, event_type, information = report
    assert event_type == 2  # failures exist
    assert information.TransactionUID == transaction_uid
    assert sorted(item.ReferencedSOPInstanceUID for item in information.ReferencedSOPSequence) == sorted(stored)
    assert [(item.ReferencedSOPInstanceUID, item.FailureReason) for item in information.FailedSOPSequence] == \
        [(unknown, 0x0112)]  # no such object instance


def recorded(server, transaction_uid):
    [(committed, failed, reported_at)] = server.sql(
        "SELECT committed, failed, reported_at FROM storage_commitment WHERE transaction_uid = %s", [transaction_uid])
    return len(committed), len(failed), reported_at is not None


def request_on_same_association(port, transaction_uid, sop_uids, calling="MODALITY1"):
    """Ask for commitment and wait for the report on the same association; (N-ACTION status, reports)."""
    reports = Reports()
    with association(port, [StorageCommitmentPushModel], calling=calling) as assoc:
        assoc.bind(evt.EVT_N_EVENT_REPORT, reports.handle)
        status, _ = assoc.send_n_action(commitment_request(transaction_uid, sop_uids), 1,
                                        StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        reports.wait()
        assert reports.received[0][0] is assoc, "the report came on another association"
    return status, reports


def test_the_report_comes_on_the_requesting_association_and_lists_10_committed_and_1_failed(server, listener):
    files = study("commit-same")
    post_zip(server, files)
    stored = [uid("commit-same", "sop", n) for n in range(10)]
    unknown = uid("commit-same", "never-sent")
    transaction_uid = uid("commit-same", "transaction")

    status, reports = request_on_same_association(listener.port, transaction_uid, stored + [unknown])

    assert status.Status == 0x0000
    assert_ten_committed_and_one_failed(reports.received[0], transaction_uid, stored, unknown)
    assert len(reports.received) == 1
    assert recorded(server, transaction_uid) == (10, 1, True)


def test_all_committed_is_reported_as_event_type_1(server, listener):
    post_zip(server, study("commit-all", 2))
    transaction_uid = uid("commit-all", "transaction")
    status, reports = request_on_same_association(listener.port, transaction_uid,
                                                  [uid("commit-all", "sop", n) for n in range(2)])
    _, event_type, information = reports.received[0]
    assert (status.Status, event_type, len(information.ReferencedSOPSequence)) == (0x0000, 1, 2)
    assert "FailedSOPSequence" not in information


def test_a_modality_that_releases_at_once_gets_the_report_on_its_own_scp(server, listener):
    files = study("commit-new")
    post_zip(server, files)
    stored = [uid("commit-new", "sop", n) for n in range(10)]
    unknown = uid("commit-new", "never-sent")
    transaction_uid = uid("commit-new", "transaction")
    # The modality's own SCP, known to the archive by its AE title.
    reports = Reports()
    scp_port = servers.free_port()
    modality = AE(ae_title="MODALITY2")
    modality.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    scp = modality.start_server(("127.0.0.1", scp_port), block=False,
                                evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handle)])
    try:
        status, _ = servers.request_json(server.url + "/modalities/modality2", method="PUT", body=json.dumps(
            {"AET": "MODALITY2", "Host": "127.0.0.1", "Port": scp_port}).encode())
        assert status == 200

        with association(listener.port, [StorageCommitmentPushModel], calling="MODALITY2") as assoc:
            answer, _ = assoc.send_n_action(commitment_request(transaction_uid, stored + [unknown]), 1,
                                            StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert answer.Status == 0x0000

        report = reports.wait()[0]
        assert report[0].is_acceptor, "the report must come on an association the archive opened"
        assert report[0].requestor.ae_title == "PACSWEB"  # the AE title the modality called (J.3.3.1.2)
        assert_ten_committed_and_one_failed(report, transaction_uid, stored, unknown)
        wait_for(lambda: recorded(server, transaction_uid)[2], what="the report recorded as delivered")
        assert recorded(server, transaction_uid) == (10, 1, True)
    finally:
        scp.shutdown()


def test_instances_stored_through_another_node_of_the_cluster_are_committed(module_node, server, listener):
    second = module_node.server("node2", join=server)
    second_listener = module_node.listener(second)
    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in study("commit-cluster")]
    stored = [str(ds.SOPInstanceUID) for ds in datasets]
    with association(second_listener.port, [CTImageStorage], calling="MODALITY3") as assoc:
        assert [assoc.send_c_store(ds).Status for ds in datasets] == [0x0000] * 10
    unknown = uid("commit-cluster", "never-sent")
    transaction_uid = uid("commit-cluster", "transaction")

    # Asked of the first node, which received none of them.
    status, reports = request_on_same_association(listener.port, transaction_uid, stored + [unknown],
                                                  calling="MODALITY3")

    assert status.Status == 0x0000
    assert_ten_committed_and_one_failed(reports.received[0], transaction_uid, stored, unknown)
    # Any node tells what was answered.
    assert recorded(second, transaction_uid) == (10, 1, True)


def test_a_request_without_transaction_uid_is_refused_as_invalid_argument(listener):
    information = commitment_request("", [uid("commit-invalid", "sop")])
    del information.TransactionUID
    with association(listener.port, [StorageCommitmentPushModel], calling="MODALITY1") as assoc:
        status, _ = assoc.send_n_action(information, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
    assert status.Status == 0x0115


# --- pacsweb as the requester: a send that asks for commitment ------------------------


def test_a_send_with_storage_commitment_says_what_the_destination_committed(module_node, listener):
    sender = module_node.server("sender")  # another archive, its own database
    (study_id,) = {answer["ParentStudy"] for answer in post_zip(sender, study("commit-send"))}
    status, _ = servers.request_json(f"{sender.url}/modalities/archive", method="PUT", body=json.dumps(
        {"AET": listener.ae_title, "Host": "127.0.0.1", "Port": listener.port}).encode())
    assert status == 200

    status, content = servers.request_json(f"{sender.url}/modalities/archive/store", method="POST",
                                           body=json.dumps({"Resources": [study_id], "StorageCommitment": True}).encode())

    assert status == 200, content
    assert content["StorageCommitment"] is True
    assert (content["InstancesCount"], content["CommittedInstancesCount"], content["UncommittedInstances"]) == \
        (10, 10, [])
    assert recorded(listener.server, content["StorageCommitmentTransactionUID"]) == (10, 0, True)


def test_a_send_with_storage_commitment_to_a_peer_without_it_fails_and_says_why(module_node):
    from tests.peers import RemotePacs

    sender = module_node.server("sender-2")
    (study_id,) = {answer["ParentStudy"] for answer in post_zip(sender, study("commit-none", 2))}
    remote = RemotePacs(servers.free_port())
    try:
        servers.request_json(f"{sender.url}/modalities/remote", method="PUT", body=json.dumps(
            {"AET": "REMOTE", "Host": "127.0.0.1", "Port": remote.port}).encode())
        status, _, body = servers.request(f"{sender.url}/modalities/remote/store", method="POST",
                                          body=json.dumps({"Resources": [study_id], "StorageCommitment": True}).encode())
    finally:
        remote.stop()
    assert status == 502
    assert b"does not accept storage commitment" in body, body
    assert len(remote.received) == 2  # the send itself went through

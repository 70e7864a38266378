"""Orders and patient updates from a RIS over MLLP, seen by a modality's worklist query
(DCMTK's findscu -W) and by the archive's REST API."""

from tests import servers
from tests.dicomgen import make_instance, uid
from tests.mllp.conftest import MODALITY_AET, acknowledged, adt, messages, orm, today
from tests.storing import store_on
from tests.worklists import findscu_worklist, query_dataset


def worklist_of(node, station, out_dir, **top):
    """What a modality gets for its station today (findscu -W, calling as MODALITY_AET)."""
    identifier = query_dataset(top, {"ScheduledStationAETitle": station, "ScheduledProcedureStepStartDate": today()})
    answers, final = findscu_worklist(node.dicom.port, identifier, out_dir, calling=MODALITY_AET)
    assert final == "Success", final
    return answers


def test_an_order_is_acknowledged_then_found_by_findscu_with_the_station_and_today(workflow_node, hl7_client,
                                                                                   tmp_path):
    client = hl7_client(workflow_node.hl7.port)
    ack = client.send(orm(placer="PO-100", step="SPS-100", accession="ACC-100", station="CT-ROOM-1",
                          patient_id="P-100", name="DOE^JOHN", control_id="ORDER-100"))
    assert acknowledged(ack) == ("AA", "ORDER-100")
    assert str(ack.segment("MSH")[9]) == "ACK^O01^ACK"

    [answer] = worklist_of(workflow_node, "CT-ROOM-1", tmp_path)
    assert (str(answer.PatientName), answer.PatientID, answer.AccessionNumber) == ("DOE^JOHN", "P-100", "ACC-100")
    assert (answer.PatientBirthDate, answer.PatientSex) == ("19700101", "M")
    assert answer.RequestedProcedureID == "RP-ACC-100"
    assert answer.RequestedProcedureDescription == "CT HEAD"
    assert str(answer.ReferringPhysicianName) == "REFERRING^RITA"
    assert answer.StudyInstanceUID.startswith("1.2.")  # generated: the order named none
    [step] = answer.ScheduledProcedureStepSequence
    assert (step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime,
            step.Modality, step.ScheduledProcedureStepID) == ("CT-ROOM-1", today(), "093000", "CT", "SPS-100")
    assert step.ScheduledProcedureStepDescription == "CT HEAD"
    # Only what was asked is answered (PS3.4 K.6.1.2.3).
    assert "PlacerOrderNumberImagingServiceRequest" not in answer
    assert "ScheduledProcedureStepStatus" not in step
    assert messages(workflow_node.server, "ORDER-100") == [("AA", "")]

    # Another day, another station: not this item.
    assert worklist_of(workflow_node, "CT-ROOM-9", tmp_path / "other") == []


def test_the_study_instance_uid_of_a_zds_segment_is_the_items(workflow_node, hl7_client, tmp_path):
    study_uid = uid("hl7", "zds")
    client = hl7_client(workflow_node.hl7.port)
    assert acknowledged(client.send(orm(placer="PO-110", accession="ACC-110", station="CT-ROOM-2",
                                        patient_id="P-110", study_uid=study_uid)))[0] == "AA"
    [answer] = worklist_of(workflow_node, "CT-ROOM-2", tmp_path)
    assert answer.StudyInstanceUID == study_uid


def test_an_order_cancelled_over_mllp_leaves_the_worklist(workflow_node, hl7_client, tmp_path):
    client = hl7_client(workflow_node.hl7.port)
    assert acknowledged(client.send(orm(placer="PO-200", accession="ACC-200", station="CT-ROOM-3",
                                        patient_id="P-200")))[0] == "AA"
    assert len(worklist_of(workflow_node, "CT-ROOM-3", tmp_path / "before")) == 1

    ack = client.send(orm(control="CA", placer="PO-200", accession="ACC-200", station="CT-ROOM-3",
                          patient_id="P-200", control_id="CANCEL-200"))
    assert acknowledged(ack) == ("AA", "CANCEL-200")
    assert worklist_of(workflow_node, "CT-ROOM-3", tmp_path / "after") == []
    status, items = servers.request_json(workflow_node.server.url + "/worklists?all&AccessionNumber=ACC-200")
    assert [item["Status"] for item in items] == ["CANCELLED"]


def test_a_cancel_of_an_unknown_order_is_answered_ae_and_kept(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    ack = client.send(orm(control="CA", placer="PO-NEVER", patient_id="P-201", control_id="CANCEL-NEVER"))
    assert acknowledged(ack) == ("AE", "CANCEL-NEVER")
    assert "PO-NEVER" in str(ack.segment("MSA")[3])
    [(outcome, error)] = messages(workflow_node.server, "CANCEL-NEVER")
    assert outcome == "AE" and "PO-NEVER" in error


def test_an_adt_update_renames_the_patient_in_the_worklist_and_in_the_stored_studies(workflow_node, hl7_client,
                                                                                     tmp_path):
    server = workflow_node.server
    stored = store_on(server, make_instance(patient_id="P-300", patient_name="OLD^NAME", study_uid=uid("adt", 1),
                                            PatientBirthDate="19700101", PatientSex="M"))
    client = hl7_client(workflow_node.hl7.port)
    assert acknowledged(client.send(orm(placer="PO-300", accession="ACC-300", station="MR-ROOM-1", modality="MR",
                                        patient_id="P-300", name="OLD^NAME")))[0] == "AA"

    ack = client.send(adt("A08", "P-300", "NEW^NAME^MARIA", birth_date="19800202", sex="F", control_id="ADT-300"))
    assert acknowledged(ack) == ("AA", "ADT-300")

    [answer] = worklist_of(workflow_node, "MR-ROOM-1", tmp_path)
    assert (str(answer.PatientName), answer.PatientBirthDate, answer.PatientSex) == ("NEW^NAME^MARIA", "19800202", "F")
    status, patient = servers.request_json(f"{server.url}/patients/{stored['ParentPatient']}")
    assert status == 200
    assert patient["MainDicomTags"]["PatientName"] == "NEW^NAME^MARIA"
    assert (patient["MainDicomTags"]["PatientBirthDate"], patient["MainDicomTags"]["PatientSex"]) == ("19800202", "F")
    status, study = servers.request_json(f"{server.url}/studies/{stored['ParentStudy']}")
    assert study["PatientMainDicomTags"]["PatientName"] == "NEW^NAME^MARIA"
    # The index matches on the new name (its normalised column changed too).
    status, found = servers.request_json(server.url + "/tools/find", method="POST",
                                         body=b'{"Level": "Patient", "Query": {"PatientName": "new^name*"}}')
    assert found == [stored["ParentPatient"]]


def test_an_a31_update_of_an_unknown_patient_is_accepted(workflow_node, hl7_client):
    client = hl7_client(workflow_node.hl7.port)
    ack = client.send(adt("A31", "P-NOBODY", "NOBODY^KNOWN", control_id="ADT-NOBODY"))
    assert acknowledged(ack) == ("AA", "ADT-NOBODY")
    assert messages(workflow_node.server, "ADT-NOBODY") == [("AA", "")]

"""MPPS SCP: a modality's N-CREATE and N-SET, sent by pynetdicom, track its
performed procedure step and the status of the worklist item it performs."""

from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityPerformedProcedureStep as MPPS

from tests.dicom.conftest import association
from tests.dicomgen import uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def add_worklist_item(server, accession, step_id, study_uid):
    """A scheduled worklist item, written straight into the node's database; its id."""
    [(item_id,)] = server.sql(
        "INSERT INTO worklist_item (placer_order_number, filler_order_number, accession_number, accession_number_norm,"
        " requested_procedure_id, requested_procedure_description, scheduled_step_id, scheduled_step_description,"
        " study_instance_uid, modality, scheduled_station_aet, scheduled_station_name, start_date, start_time,"
        " patient_id, patient_id_norm, issuer_of_patient_id, patient_name, patient_name_norm, patient_birth_date,"
        " patient_sex, referring_physician, requesting_physician, status, attributes, created_at, updated_at)"
        " VALUES (%s, '', %s, %s, 'RP1', 'CT CHEST', %s, 'CT CHEST', %s, 'CT', 'CT1', '', '20260115', '101500',"
        " 'P-MPPS', 'P-MPPS', '', 'DOE^JANE', 'DOE^JANE', '', 'F', '', '', 'SCHEDULED', '{}', now(), now())"
        " RETURNING id",
        [f"ORD-{accession}", accession, accession.upper(), step_id, study_uid])
    return item_id


def worklist_status(server, item_id):
    [(status,)] = server.sql("SELECT status FROM worklist_item WHERE id = %s", [item_id])
    return status


def performed_step(server, sop_instance_uid):
    rows = server.sql("SELECT status, worklist_item_id, performed_series, attributes, calling_aet"
                      " FROM performed_step WHERE sop_instance_uid = %s", [sop_instance_uid])
    return rows[0] if rows else None


def creation(accession, step_id, study_uid, status="IN PROGRESS"):
    """An N-CREATE attribute list as a modality sends it (PS3.4 Table F.7.2-1)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    scheduled = Dataset()
    scheduled.StudyInstanceUID = study_uid
    scheduled.AccessionNumber = accession
    scheduled.RequestedProcedureID = "RP1"
    scheduled.RequestedProcedureDescription = "CT CHEST"
    scheduled.ScheduledProcedureStepID = step_id
    scheduled.ScheduledProcedureStepDescription = "CT CHEST"
    scheduled.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [scheduled]
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "P-MPPS"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = "PPS-1"
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = "CT ROOM 1"
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20260115"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = "CT CHEST"
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = None
    ds.PerformedProcedureStepEndTime = None
    ds.Modality = "CT"
    ds.StudyID = "1"
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def completion(series_uid, sop_uids, status="COMPLETED"):
    """An N-SET modification list that ends the step with its series."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20260115"
    ds.PerformedProcedureStepEndTime = "103000"
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.SeriesDescription = "AXIAL 1mm"
    series.ProtocolName = "CHEST"
    series.PerformingPhysicianName = ""
    series.OperatorsName = ""
    series.RetrieveAETitle = "PACSWEB"
    images = []
    for sop_uid in sop_uids:
        image = Dataset()
        image.ReferencedSOPClassUID = CT_IMAGE
        image.ReferencedSOPInstanceUID = sop_uid
        images.append(image)
    series.ReferencedImageSequence = images
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    ds.PerformedSeriesSequence = [series]
    return ds


def test_n_create_then_n_set_completed_tracks_the_step_and_its_worklist_item(server, listener):
    study_uid, step_uid = uid("mpps", "study"), uid("mpps", "step")
    item_id = add_worklist_item(server, "ACC-MPPS-1", "SPS-1", study_uid)
    series_uid = uid("mpps", "series")
    sop_uids = [uid("mpps", "sop", n) for n in range(3)]

    with association(listener.port, [MPPS], calling="CT1") as assoc:
        created, _ = assoc.send_n_create(creation("ACC-MPPS-1", "SPS-1", study_uid), MPPS, step_uid)
        assert created.Status == 0x0000
        status, item, _, _, calling = performed_step(server, step_uid)
        assert (status, item, calling) == ("IN PROGRESS", item_id, "CT1")
        assert worklist_status(server, item_id) == "IN PROGRESS"

        done, _ = assoc.send_n_set(completion(series_uid, sop_uids), MPPS, step_uid)
        assert done.Status == 0x0000

    status, item, series, attributes, _ = performed_step(server, step_uid)
    assert (status, item) == ("COMPLETED", item_id)
    assert worklist_status(server, item_id) == "COMPLETED"
    assert [(s["SeriesInstanceUID"], [i["SOPInstanceUID"] for i in s["Instances"]]) for s in series] == \
        [(series_uid, sop_uids)]
    # The whole dataset is kept in the DICOM JSON model, the N-CREATE's attributes with the N-SET's.
    assert attributes["00400253"] == {"vr": "SH", "Value": ["PPS-1"]}
    assert attributes["00400251"] == {"vr": "TM", "Value": ["103000"]}


def test_an_n_set_after_completed_is_refused_as_may_no_longer_be_updated(server, listener):
    study_uid, step_uid = uid("mpps-final", "study"), uid("mpps-final", "step")
    item_id = add_worklist_item(server, "ACC-MPPS-2", "SPS-1", study_uid)

    with association(listener.port, [MPPS], calling="CT1") as assoc:
        assoc.send_n_create(creation("ACC-MPPS-2", "SPS-1", study_uid), MPPS, step_uid)
        first, _ = assoc.send_n_set(completion(uid("mpps-final", "series"), []), MPPS, step_uid)
        again, _ = assoc.send_n_set(completion(uid("mpps-final", "series"), [], status="DISCONTINUED"), MPPS,
                                    step_uid)

    assert first.Status == 0x0000
    # PS3.4 F.7.2.2.4, Table F.7.2-2.
    assert again.Status == 0x0110
    assert again.ErrorID == 0xA710
    assert again.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert performed_step(server, step_uid)[0] == "COMPLETED"
    assert worklist_status(server, item_id) == "COMPLETED"


def test_a_discontinued_step_discontinues_its_worklist_item(server, listener):
    study_uid, step_uid = uid("mpps-dc", "study"), uid("mpps-dc", "step")
    item_id = add_worklist_item(server, "ACC-MPPS-3", "SPS-1", study_uid)

    with association(listener.port, [MPPS], calling="CT1") as assoc:
        assoc.send_n_create(creation("ACC-MPPS-3", "SPS-1", study_uid), MPPS, step_uid)
        stopped, _ = assoc.send_n_set(completion(uid("mpps-dc", "series"), [], status="DISCONTINUED"), MPPS,
                                      step_uid)

    assert stopped.Status == 0x0000
    assert performed_step(server, step_uid)[0] == "DISCONTINUED"
    assert worklist_status(server, item_id) == "DISCONTINUED"


def test_an_unscheduled_step_is_tracked_without_a_worklist_item(server, listener):
    step_uid = uid("mpps-unscheduled", "step")
    with association(listener.port, [MPPS], calling="CT1") as assoc:
        created, _ = assoc.send_n_create(creation("", "", uid("mpps-unscheduled", "study")), MPPS, step_uid)
    assert created.Status == 0x0000
    assert performed_step(server, step_uid)[:2] == ("IN PROGRESS", None)


def test_a_second_n_create_of_the_same_step_is_refused_as_duplicate(server, listener):
    step_uid = uid("mpps-dup", "step")
    with association(listener.port, [MPPS], calling="CT1") as assoc:
        first, _ = assoc.send_n_create(creation("", "", uid("mpps-dup", "study")), MPPS, step_uid)
        second, _ = assoc.send_n_create(creation("", "", uid("mpps-dup", "study")), MPPS, step_uid)
    assert (first.Status, second.Status) == (0x0000, 0x0111)


def test_an_n_create_in_another_status_than_in_progress_is_refused_as_invalid_attribute_value(server, listener):
    step_uid = uid("mpps-invalid", "step")
    with association(listener.port, [MPPS], calling="CT1") as assoc:
        created, _ = assoc.send_n_create(creation("", "", uid("mpps-invalid", "study"), status="COMPLETED"), MPPS,
                                         step_uid)
    assert created.Status == 0x0106
    assert performed_step(server, step_uid) is None


def test_an_n_set_of_an_unknown_step_is_refused_as_no_such_instance(server, listener):
    with association(listener.port, [MPPS], calling="CT1") as assoc:
        status, _ = assoc.send_n_set(completion(uid("mpps-unknown", "series"), []), MPPS, uid("mpps-unknown"))
    assert status.Status == 0x0112


def test_a_modality_that_may_not_store_may_not_report_its_steps(module_node, server):
    closed = module_node.listener(server, PACS_DICOM_ALWAYS_ALLOW_STORE="false")
    step_uid = uid("mpps-refused", "step")
    with association(closed.port, [MPPS], calling="STRANGER") as assoc:
        created, _ = assoc.send_n_create(creation("", "", uid("mpps-refused", "study")), MPPS, step_uid)
    assert created.Status == 0x0124
    assert performed_step(server, step_uid) is None

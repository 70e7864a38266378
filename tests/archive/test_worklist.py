"""archive.worklist called directly: orders applied, patients updated, and the
matching a Modality Worklist C-FIND gets (the archive's own matching rules)."""

import pytest
from pydicom.dataset import Dataset

from archive import ingest, worklist
from archive.errors import InvalidOrder, InvalidQuery, UnknownOrder
from archive.models import Hl7Message, Patient, StepStatus, WorklistItem
from tests.dicomgen import make_instance

UPLOAD = ingest.Origin.http("127.0.0.1", "admin")


def order(placer, step="1", action=worklist.NEW, patient_id="P1", name="DOE^JANE", **values):
    values = {"accession_number": f"ACC-{placer}", "scheduled_station_aet": "CT1", "modality": "CT",
              "start_date": "20250310", "start_time": "090000", **values}
    return worklist.Order(action=action, placer_order_number=placer, scheduled_step_id=step,
                          patient=worklist.Demographics(patient_id=patient_id, patient_name=name), **values)


ITEMS = [
    # placer, patient id, name, station, modality, date, time
    ("O1", "P1", "MÜLLER^HANS", "CT1", "CT", "20250310", "083000"),
    ("O2", "P2", "MULLER^ANNA", "CT1", "CT", "20250310", "141500"),
    ("O3", "P3", "SMITH^JOHN", "MR1", "MR", "20250311", "100000"),
    ("O4", "P4", "SMYTHE^JANE", "US1", "US", "20250312", "073000"),
]


@pytest.fixture
def scheduled(db):
    worklist.apply_orders([order(placer, patient_id=patient_id, name=name, scheduled_station_aet=station,
                                 modality=modality, start_date=date, start_time=time)
                           for placer, patient_id, name, station, modality, date, time in ITEMS])


def found(**criteria):
    items, _ = worklist.find(criteria)
    return [item.placer_order_number for item in items]


@pytest.mark.parametrize("criteria, expected", [
    ({}, ["O1", "O2", "O3", "O4"]),
    ({"ScheduledStationAETitle": "CT1"}, ["O1", "O2"]),
    ({"Modality": "MR"}, ["O3"]),
    ({"ScheduledProcedureStepStartDate": "20250310"}, ["O1", "O2"]),
    ({"ScheduledProcedureStepStartDate": "20250311-"}, ["O3", "O4"]),
    ({"ScheduledProcedureStepStartDate": "-20250311"}, ["O1", "O2", "O3"]),
    ({"ScheduledProcedureStepStartDate": "20250310", "ScheduledProcedureStepStartTime": "-120000"}, ["O1"]),
    ({"ScheduledProcedureStepStartTime": "080000-100000"}, ["O1", "O3"]),
    ({"PatientName": "muller*"}, ["O1", "O2"]),  # accents and case do not matter, as in the archive
    ({"PatientName": "M?LLER^HANS"}, ["O1"]),
    ({"PatientName": "sm*th*"}, ["O3", "O4"]),
    ({"PatientName": "smith^*"}, ["O3"]),
    ({"PatientName": "*J*"}, ["O3", "O4"]),
    ({"PatientID": "p3"}, ["O3"]),
    ({"AccessionNumber": "acc-o4"}, ["O4"]),
    ({"ScheduledStationAETitle": "CT1\\US1"}, ["O1", "O2", "O4"]),
    ({"StudyDescription": "ignored"}, ["O1", "O2", "O3", "O4"]),  # not a worklist key: does not restrict
])
def test_worklist_matching(scheduled, criteria, expected):
    assert found(**criteria) == expected


def test_a_range_without_bounds_is_an_invalid_query(scheduled):
    with pytest.raises(InvalidQuery):
        worklist.find({"ScheduledProcedureStepStartDate": "-"})


def test_finished_steps_are_not_found_unless_asked(scheduled):
    worklist.apply_orders([order("O1", action=worklist.CANCEL),
                           order("O2", action=worklist.DISCONTINUE),
                           order("O3", action=worklist.STATUS, status=StepStatus.COMPLETED)])
    assert found() == ["O4"]
    items, _ = worklist.find({}, finished=True)
    assert {i.placer_order_number: i.status for i in items} == {
        "O1": "CANCELLED", "O2": "DISCONTINUED", "O3": "COMPLETED", "O4": "SCHEDULED"}


def test_limit_says_when_more_items_match(scheduled):
    items, more = worklist.find({}, limit=3)
    assert len(items) == 3 and more
    items, more = worklist.find({}, limit=3, offset=3)
    assert [i.placer_order_number for i in items] == ["O4"] and not more


def test_a_new_order_gets_a_study_uid_and_the_same_order_again_updates_it(db):
    [first] = worklist.apply_orders([order("O9", accession_number="ACC-9")])
    assert first.study_instance_uid and first.status == StepStatus.SCHEDULED
    [again] = worklist.apply_orders([order("O9", accession_number="ACC-9B", start_time="100000")])
    assert again.pk == first.pk and again.study_instance_uid == first.study_instance_uid
    assert (again.accession_number, again.start_time) == ("ACC-9B", "100000")
    assert WorklistItem.objects.count() == 1


def test_a_change_keeps_a_cancelled_step_cancelled_and_a_new_order_reschedules_it(db):
    worklist.apply_orders([order("O8")])
    worklist.apply_orders([order("O8", action=worklist.CANCEL, step="")])
    [changed] = worklist.apply_orders([order("O8", action=worklist.CHANGE, modality="MR")])
    assert (changed.status, changed.modality) == (StepStatus.CANCELLED, "MR")
    [renewed] = worklist.apply_orders([order("O8")])
    assert renewed.status == StepStatus.SCHEDULED


def test_a_cancel_without_a_step_id_cancels_every_step_of_the_order(db):
    worklist.apply_orders([order("O7", step="A"), order("O7", step="B"), order("O6", step="A")])
    cancelled = worklist.apply_orders([order("O7", step="", action=worklist.CANCEL)])
    assert sorted(i.scheduled_step_id for i in cancelled) == ["A", "B"]
    assert found() == ["O6"]


def test_a_cancel_of_an_unknown_order_changes_nothing(db):
    worklist.apply_orders([order("O5")])
    with pytest.raises(UnknownOrder):
        worklist.apply_orders([order("O5", action=worklist.CANCEL), order("NOPE", action=worklist.CANCEL)])
    assert found() == ["O5"]  # all or nothing


@pytest.mark.parametrize("values, words", [
    ({"patient": worklist.Demographics(patient_id="")}, "patient ID"),
    ({"study_instance_uid": "1.2.abc"}, "UID"),
    ({"start_date": "2025-03-10"}, "date"),
    ({"placer_order_number": "", "scheduled_step_id": ""}, "placer order number"),
])
def test_an_order_missing_what_names_it_is_refused(db, values, words):
    bad = order("O4")
    for name, value in values.items():
        setattr(bad, name, value)
    with pytest.raises(InvalidOrder, match=words):
        worklist.apply_orders([bad])
    assert WorklistItem.objects.count() == 0


def test_a_received_message_is_kept_with_its_effect(db):
    received = worklist.Received(raw="MSH|...", control_id="M1", message_type="ORM^O01", remote_address="10.0.0.9")
    worklist.apply_orders([order("O3")], received)
    worklist.record_message(worklist.Received(raw="garbage"), "AR", "not HL7")
    assert list(Hl7Message.objects.order_by("id").values_list("control_id", "outcome", "error")) == [
        ("M1", "AA", ""), ("", "AR", "not HL7")]


def test_a_patient_update_reaches_the_worklist_and_the_index(db, storage_dir):
    ingest.store(make_instance(patient_id="P1", patient_name="DOE^JANE", PatientBirthDate="19700101",
                               PatientSex="F"), UPLOAD)
    worklist.apply_orders([order("O1", patient_id="P1"), order("O2", patient_id="P2")])
    items, patients = worklist.update_patient(worklist.Demographics(
        patient_id="P1", patient_name="DOE-SMITH^JANE", patient_birth_date="19700102"))
    assert (items, patients) == (1, 1)
    item = WorklistItem.objects.get(placer_order_number="O1")
    assert (item.patient_name, item.patient_name_norm, item.patient_birth_date) == (
        "DOE-SMITH^JANE", "DOE-SMITH^JANE", "19700102")
    patient = Patient.objects.get(patient_id="P1")
    assert patient.main_dicom_tags["PatientName"] == "DOE-SMITH^JANE"
    assert patient.main_dicom_tags["PatientBirthDate"] == "19700102"
    assert patient.main_dicom_tags["PatientSex"] == "F"  # not given: left as it was
    assert (patient.patient_name_norm, patient.patient_birth_date) == ("DOE-SMITH^JANE", "19700102")
    assert WorklistItem.objects.get(placer_order_number="O2").patient_name == "DOE^JANE"


def test_an_items_dataset_has_the_scheduled_workflow_attributes(db):
    [item] = worklist.apply_orders([order("O1", requested_procedure_id="RP1", scheduled_station_name="ROOM 1",
                                          referring_physician="WHO^DOCTOR")])
    dataset = worklist.dataset(item)
    assert (dataset.AccessionNumber, dataset.PatientID, str(dataset.ReferringPhysicianName)) == (
        "ACC-O1", "P1", "WHO^DOCTOR")
    assert dataset.StudyInstanceUID == item.study_instance_uid
    [step] = dataset.ScheduledProcedureStepSequence
    assert (step.ScheduledStationAETitle, step.ScheduledStationName, step.Modality,
            step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStatus) == (
        "CT1", "ROOM 1", "CT", "20250310", "SCHEDULED")
    assert "ScheduledPerformingPhysicianName" in step


def test_an_order_from_a_dataset_keeps_what_the_columns_do_not_hold(db):
    source = Dataset()
    source.PatientID = "P7"
    source.PatientName = "ROE^RICHARD"
    source.AccessionNumber = "ACC-7"
    source.AdmissionID = "ADM-7"
    step = Dataset()
    step.ScheduledStationAETitle = "DX1"
    step.Modality = "DX"
    step.ScheduledProcedureStepStartDate = "20250401"
    step.ScheduledPerformingPhysicianName = "TECH^TOM"
    source.ScheduledProcedureStepSequence = [step]
    item = worklist.create(worklist.order_from_dataset(source))
    assert item.scheduled_step_id  # generated: nothing else names the step
    dataset = worklist.dataset(item)
    assert (dataset.AdmissionID, dataset.AccessionNumber) == ("ADM-7", "ACC-7")
    assert str(dataset.ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName) == "TECH^TOM"
    assert dataset.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "DX1"

"""mpps: performed procedure steps and the worklist items they perform."""

import pytest
from django.utils import timezone

from archive import mpps
from archive.errors import DuplicatePerformedStep, FinalPerformedStep, InvalidPerformedStep, UnknownPerformedStep
from archive.models import PerformedStep, StepStatus, WorklistItem


def worklist_item(accession, step_id="SPS1", study_uid="1.2.3.4", placer=None):
    now = timezone.now()
    return WorklistItem.objects.create(
        placer_order_number=placer or f"ORD-{accession}-{step_id}", accession_number=accession,
        accession_number_norm=accession.upper(), scheduled_step_id=step_id, study_instance_uid=study_uid,
        patient_id="P1", patient_id_norm="P1", created_at=now, updated_at=now)


def text(value, vr="CS"):
    return {"vr": vr, "Value": [value]}


def scheduled(accession="", step_id="", study_uid="1.2.3.4"):
    item = {"0020000D": text(study_uid, "UI"), "00080050": text(accession, "SH") if accession else {"vr": "SH"},
            "00400009": text(step_id, "SH") if step_id else {"vr": "SH"}}
    return {"vr": "SQ", "Value": [item]}


def created(status="IN PROGRESS", **keys):
    return {"00400252": text(status), "00400270": scheduled(**keys), "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}}


def completed(status="COMPLETED"):
    image = {"00081150": text("1.2.840.10008.5.1.4.1.1.2", "UI"), "00081155": text("1.2.3.4.5.1", "UI")}
    series = {"0020000E": text("1.2.3.4.5", "UI"), "0008103E": text("AXIAL", "LO"),
              "00081140": {"vr": "SQ", "Value": [image]}}
    return {"00400252": text(status), "00400340": {"vr": "SQ", "Value": [series]},
            "00080005": text("ISO_IR 192")}


def test_a_step_created_in_progress_links_its_worklist_item_by_accession_and_step_id(db):
    item = worklist_item("ACC1", "SPS1")
    other = worklist_item("ACC1", "SPS2")

    step = mpps.create("1.2.9.1", created(accession="acc1", step_id="SPS1"), calling_aet="CT1")

    assert (step.status, step.worklist_item_id, step.calling_aet) == (StepStatus.IN_PROGRESS, item.pk, "CT1")
    item.refresh_from_db(), other.refresh_from_db()
    assert (item.status, other.status) == (StepStatus.IN_PROGRESS, StepStatus.SCHEDULED)


def test_a_step_without_accession_number_links_by_study_instance_uid(db):
    item = worklist_item("ACC2", "SPS1", study_uid="1.2.3.99")
    step = mpps.create("1.2.9.2", created(study_uid="1.2.3.99"))
    assert step.worklist_item_id == item.pk


def test_an_unscheduled_step_links_no_item(db):
    worklist_item("ACC3")
    step = mpps.create("1.2.9.3", created(study_uid="1.2.3.100"))
    assert step.worklist_item_id is None


def test_completing_a_step_keeps_its_series_and_completes_its_item(db):
    item = worklist_item("ACC4")
    mpps.create("1.2.9.4", created(accession="ACC4", step_id="SPS1"))

    step = mpps.update("1.2.9.4", completed())

    assert step.status == StepStatus.COMPLETED
    assert step.performed_series == [{"SeriesInstanceUID": "1.2.3.4.5", "SeriesDescription": "AXIAL", "ProtocolName": "",
                                      "RetrieveAETitle": "",
                                      "Instances": [{"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
                                                     "SOPInstanceUID": "1.2.3.4.5.1"}]}]
    # What the N-CREATE gave stays; the N-SET's character set does not replace it.
    assert step.attributes["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert "00080005" not in step.attributes
    item.refresh_from_db()
    assert item.status == StepStatus.COMPLETED


@pytest.mark.parametrize("final", ["COMPLETED", "DISCONTINUED"])
def test_a_step_in_its_final_state_may_no_longer_be_updated(db, final):
    item = worklist_item("ACC5")
    mpps.create("1.2.9.5", created(accession="ACC5", step_id="SPS1"))
    mpps.update("1.2.9.5", completed(final))

    with pytest.raises(FinalPerformedStep):
        mpps.update("1.2.9.5", completed("IN PROGRESS"))

    assert PerformedStep.objects.get(sop_instance_uid="1.2.9.5").status == final
    item.refresh_from_db()
    assert item.status == final


def test_an_n_set_that_keeps_the_step_in_progress_updates_it(db):
    mpps.create("1.2.9.6", created())
    step = mpps.update("1.2.9.6", {"00400254": text("STILL SCANNING", "LO")})
    assert step.status == StepStatus.IN_PROGRESS
    assert step.attributes["00400254"]["Value"] == ["STILL SCANNING"]


def test_creating_a_step_twice_is_refused_as_duplicate(db):
    mpps.create("1.2.9.7", created())
    with pytest.raises(DuplicatePerformedStep):
        mpps.create("1.2.9.7", created())
    assert PerformedStep.objects.count() == 1


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", ""])
def test_a_step_created_in_another_status_than_in_progress_is_refused(db, status):
    with pytest.raises(InvalidPerformedStep):
        mpps.create("1.2.9.8", created(status))
    assert not PerformedStep.objects.exists()


def test_an_unknown_status_is_refused(db):
    mpps.create("1.2.9.9", created())
    with pytest.raises(InvalidPerformedStep):
        mpps.update("1.2.9.9", completed("DONE"))


def test_updating_an_unknown_step_is_refused(db):
    with pytest.raises(UnknownPerformedStep):
        mpps.update("1.2.9.10", completed())

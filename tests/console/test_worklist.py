"""The console's worklist and performed steps pages (Django's test client): today's
steps and their filters, scheduling and cancelling by an administrator only, the
audit trail, and the performed steps (MPPS) the modalities reported."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from archive import mpps, worklist
from archive.models import AuditEvent, StepStatus, WorklistItem
from archive.roles import ADMIN, VIEWER
from console.urls import route_roles


def day(offset=0):
    return timezone.localdate() + datetime.timedelta(days=offset)


def schedule(accession, name="DOE^JANE", patient_id="P1", modality="CT", station="CT1", date=None, time="093000"):
    """A step scheduled as the RIS would (archive.worklist.create)."""
    return worklist.create(worklist.Order(
        action=worklist.NEW, scheduled_step_id=f"S-{accession}", accession_number=accession, modality=modality,
        scheduled_station_aet=station, start_date=(date or day()).strftime("%Y%m%d"), start_time=time,
        requested_procedure_description=f"{modality} EXAM",
        patient=worklist.Demographics(patient_id=patient_id, patient_name=name)))


def accessions(response):
    assert response.status_code == 200
    return [item.accession_number for item in response.context["items"]]


@pytest.fixture
def viewer(as_role):
    return as_role("viewer")


@pytest.fixture
def steps(db):
    schedule("A1", "MÜLLER^HANS", "P1", "CT", "CT1", time="083000")
    schedule("A2", "MULLER^ANNA", "P2", "CT", "CT2", time="141500")
    schedule("A3", "SMITH^JOHN", "P3", "MR", "MR1", time="100000")
    schedule("B1", "DOE^JANE", "P4", "CT", "CT1", date=day(1))
    worklist.cancel(schedule("C1", "ROE^RICHARD", "P5", "US", "US1").pk)


def test_the_worklist_routes_declare_their_roles():
    table = route_roles()
    assert table["worklist/"] == {"GET": VIEWER, "POST": None}
    assert table["performed/"] == {"GET": VIEWER, "POST": None}
    assert table["worklist/new"] == {"GET": ADMIN, "POST": ADMIN}
    assert table["worklist/<int:item_id>/cancel"] == {"GET": None, "POST": ADMIN}


def test_the_worklist_shows_todays_open_steps_in_schedule_order(viewer, steps):
    response = viewer.get("/ui/worklist/")
    assert accessions(response) == ["A1", "A3", "A2"]
    content = response.content.decode()
    assert "MÜLLER, HANS" in content and "08:30:00" in content and "CT EXAM" in content
    assert f'value="{day().isoformat()}"' in content  # the date filter says which day it shows
    assert '<a href="/ui/worklist/" aria-current="page">Worklist</a>' in content  # in the main menu


@pytest.mark.parametrize("query, expected", [
    ("modality=MR", ["A3"]),
    ("station_aet=CT1", ["A1"]),
    ("patient_name=muller", ["A1", "A2"]),  # from its start; accents and case do not matter
    ("patient_name=*ANNA", ["A2"]),
    ("patient_id=p3", ["A3"]),
    ("accession=a2", ["A2"]),
    ("status=all", ["A1", "C1", "A3", "A2"]),  # finished ones too
    ("date=", ["A1", "A3", "A2", "B1"]),  # every date
    ("date=" + day(1).isoformat(), ["B1"]),
    ("modality=XA", []),
])
def test_the_worklist_filters(viewer, steps, query, expected):
    response = viewer.get("/ui/worklist/?" + query)
    assert accessions(response) == expected
    if not expected:
        assert b"matches these filters" in response.content


def test_an_invalid_date_is_shown_on_the_form(viewer, steps):
    response = viewer.get("/ui/worklist/?date=tomorrow")
    assert response.status_code == 200 and response.context["items"] == []
    assert b"Check the search fields" in response.content and b"Enter a valid date" in response.content


def test_the_worklist_pages_through_the_steps(viewer, db, monkeypatch):
    monkeypatch.setattr("console.views.worklist.PAGE_SIZE", 2)
    for n in range(5):
        schedule(f"P{n}", time=f"0{n}0000")
    first = viewer.get("/ui/worklist/")
    assert accessions(first) == ["P0", "P1"] and b"Later" in first.content and b"Earlier" not in first.content
    assert accessions(viewer.get("/ui/worklist/?page=3")) == ["P4"]
    assert b"Nothing on this page" in viewer.get("/ui/worklist/?page=9").content


def test_a_viewer_reads_the_worklist_but_cannot_schedule_or_cancel(viewer, steps):
    item = WorklistItem.objects.get(accession_number="A1")
    page = viewer.get("/ui/worklist/").content.decode()
    assert "A1" in page and 'data-action="cancel"' not in page and "/ui/worklist/new" not in page
    assert viewer.get("/ui/worklist/new").status_code == 403
    assert viewer.post("/ui/worklist/new", {"patient_id": "X"}).status_code == 403
    assert viewer.post(f"/ui/worklist/{item.pk}/cancel").status_code == 403
    assert viewer.get("/ui/performed/").status_code == 200
    item.refresh_from_db()
    assert item.status == StepStatus.SCHEDULED
    assert WorklistItem.objects.count() == 5


def test_an_admin_schedules_a_step_that_modalities_then_find(admin):
    assert admin.get("/ui/worklist/new").status_code == 200
    response = admin.post("/ui/worklist/new", {
        "patient_id": "P-77", "patient_name": "ÉCLAIR^ÉMILE", "patient_birth_date": "1980-02-29", "patient_sex": "M",
        "accession_number": "ACC77", "requested_procedure_id": "RP1", "requested_procedure_description": "CT CHEST",
        "scheduled_step_id": "", "scheduled_step_description": "Chest without contrast", "modality": "ct",
        "scheduled_station_aet": "CT1", "start_date": day().isoformat(), "start_time": "14:30",
    })
    assert response.status_code == 302 and response["Location"] == f"/ui/worklist/?date={day().isoformat()}"
    items, _ = worklist.find({"ScheduledStationAETitle": "CT1", "Modality": "CT",
                              "ScheduledProcedureStepStartDate": day().strftime("%Y%m%d")})
    (item,) = items
    assert (item.patient_id, item.patient_name, item.patient_birth_date, item.patient_sex) == \
        ("P-77", "ÉCLAIR^ÉMILE", "19800229", "M")
    assert (item.accession_number, item.requested_procedure_id, item.start_time) == ("ACC77", "RP1", "143000")
    assert item.scheduled_step_id and item.study_instance_uid  # made up, as POST /worklists does
    assert item.status == StepStatus.SCHEDULED
    page = admin.get(response["Location"]).content.decode()
    assert "Scheduled CT for ÉCLAIR, ÉMILE (accession ACC77)" in page and "CT CHEST" in page
    event = AuditEvent.objects.get(action="store")
    assert (event.actor, event.level, event.resource) == ("admin-user", "Worklist", str(item.pk))
    assert event.details["via"] == "console" and event.details["accession"] == "ACC77"


@pytest.mark.parametrize("change, field, words", [
    ({"patient_id": ""}, "patient_id", "This field is required"),
    ({"accession_number": "A" * 17}, "accession_number", "at most 16 characters"),
    ({"modality": "C-T"}, "modality", "capital letters"),
    ({"start_date": "2025-02-30"}, "start_date", "Enter a valid date"),
    ({"start_time": "25:00"}, "start_time", "Enter a valid time"),
    ({"patient_name": "DOE\\JANE"}, "patient_name", "Backslashes"),
    ({"scheduled_step_id": "S-A1"}, "scheduled_step_id", "exists already"),
])
def test_the_schedule_form_says_what_is_wrong(admin, change, field, words):
    schedule("A1")
    values = {"patient_id": "P9", "accession_number": "A9", "modality": "CT", "start_date": day().isoformat()}
    response = admin.post("/ui/worklist/new", {**values, **change})
    assert response.status_code == 200
    assert any(words in error for error in response.context["form"].errors[field])
    assert words.encode() in response.content
    assert WorklistItem.objects.count() == 1 and not AuditEvent.objects.filter(action="store").exists()


def test_what_the_worklist_refuses_is_shown_on_the_form(admin, monkeypatch):
    def refuse(order):
        raise worklist.InvalidOrder("the order has no patient ID")

    monkeypatch.setattr(worklist, "create", refuse)
    response = admin.post("/ui/worklist/new", {"patient_id": "P9", "accession_number": "A9", "modality": "CT",
                                               "start_date": day().isoformat()})
    assert response.status_code == 200 and b"Not scheduled: the order has no patient ID." in response.content


def test_an_admin_cancels_a_step_and_modalities_no_longer_find_it(admin, steps):
    item = WorklistItem.objects.get(accession_number="A2")
    page = admin.get("/ui/worklist/?modality=CT").content.decode()
    assert page.count('data-action="cancel"') == 2
    response = admin.post(f"/ui/worklist/{item.pk}/cancel", {"next": "/ui/worklist/?modality=CT"})
    assert response.status_code == 302 and response["Location"] == "/ui/worklist/?modality=CT"
    item.refresh_from_db()
    assert item.status == StepStatus.CANCELLED
    assert worklist.find({"AccessionNumber": "A2"})[0] == []
    listed = admin.get("/ui/worklist/?modality=CT")
    assert accessions(listed) == ["A1"] and b"modalities no longer find it" in listed.content
    everything = admin.get("/ui/worklist/?status=all").content.decode()
    assert f'data-item="{item.pk}" data-status="CANCELLED"' in everything
    assert everything.count('data-action="cancel"') == 2  # A1 and A3: no button on a finished step
    again = admin.post(f"/ui/worklist/{item.pk}/cancel", follow=True)
    assert b"was already cancelled" in again.content
    assert admin.post("/ui/worklist/999999/cancel").status_code == 404
    assert admin.post(f"/ui/worklist/{item.pk}/cancel", {"next": "https://elsewhere.example/"})["Location"] == \
        "/ui/worklist/"
    (event,) = AuditEvent.objects.filter(action="delete")
    assert (event.actor, event.level, event.resource) == ("admin-user", "Worklist", str(item.pk))
    assert event.details["cancelled"] is True and event.details["accession"] == "A2"


def performed_attributes(accession, step_id, status="IN PROGRESS"):
    def text(value, vr="CS"):
        return {"vr": vr, "Value": [value]}

    image = {"00081150": text("1.2.840.10008.5.1.4.1.1.2", "UI"), "00081155": text("1.2.3.4.5.1", "UI")}
    series = {"0020000E": text("1.2.3.4.5", "UI"), "0008103E": text("AXIAL", "LO"),
              "00081140": {"vr": "SQ", "Value": [image]}}
    return {
        "00400252": text(status), "00400253": text("PPS-1", "SH"), "00400254": text("CT CHEST PERFORMED", "LO"),
        "00400244": text("20250310", "DA"), "00400245": text("101500", "TM"),
        "00400270": {"vr": "SQ", "Value": [{"00080050": text(accession, "SH"), "00400009": text(step_id, "SH")}]},
        "00400340": {"vr": "SQ", "Value": [series]},
    }


def test_performed_steps_are_listed_and_shown_on_their_worklist_item(viewer, steps):
    item = WorklistItem.objects.get(accession_number="A1")
    mpps.create("1.2.826.0.1.1", performed_attributes("A1", item.scheduled_step_id), calling_aet="CT1")
    mpps.create("1.2.826.0.1.2", {"00400252": {"vr": "CS", "Value": ["IN PROGRESS"]}}, calling_aet="US9")
    mpps.update("1.2.826.0.1.2", {"00400252": {"vr": "CS", "Value": ["DISCONTINUED"]}})

    page = viewer.get("/ui/performed/")
    assert page.status_code == 200
    rows = page.content.decode().split('<tr data-step="')[1:]
    assert [row.split('"')[0] for row in rows] == ["1.2.826.0.1.2", "1.2.826.0.1.1"]  # newest first
    performed = rows[1]
    assert "IN PROGRESS" in performed and "CT1" in performed and "2025-03-10 10:15:00" in performed
    assert "MÜLLER, HANS" in performed and "CT CHEST PERFORMED" in performed and "PPS-1" in performed
    assert '<td class="num">1</td>' in performed  # one performed series
    assert f"/ui/worklist/?date={day().isoformat()}&amp;accession=A1&amp;status=all" in performed
    assert "DISCONTINUED" in rows[0] and "unscheduled" in rows[0]
    only = viewer.get("/ui/performed/?status=DISCONTINUED").content.decode()
    assert only.count('<tr data-step="') == 1

    worklist_page = viewer.get("/ui/worklist/").content.decode()
    row = worklist_page.split(f'data-item="{item.pk}"')[1].split("</tr>")[0]
    assert 'data-status="IN PROGRESS"' in row  # the step's status follows what the modality reported
    performed_cell = row.split('data-field="performed"')[1]
    assert '<span class="badge in-progress">IN PROGRESS</span>' in performed_cell


def test_the_performed_steps_page_is_empty_before_any_report(viewer):
    assert b"No modality has reported a performed step yet" in viewer.get("/ui/performed/").content


def test_the_worklist_page_costs_the_same_for_one_or_many_items(viewer, db):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get("/ui/worklist/").status_code == 200
        return len(captured)

    item = schedule("Q0")
    mpps.create("1.2.826.0.2.0", performed_attributes("Q0", item.scheduled_step_id))
    one = queries()
    for n in range(1, 6):
        item = schedule(f"Q{n}")
        mpps.create(f"1.2.826.0.2.{n}", performed_attributes(f"Q{n}", item.scheduled_step_id))
    assert queries() == one

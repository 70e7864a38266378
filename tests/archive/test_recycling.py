"""A bounded archive: PACS_MAXIMUM_PATIENT_COUNT / PACS_MAXIMUM_STORAGE_SIZE in Recycle and
Reject modes, protected patients, and exact bounds under concurrent stores."""

import threading

import pytest
from django.db import connection
from django.db.models import Sum

from archive import ingest
from archive.models import Attachment, FileDeletion, Patient
from tests.dicomgen import make_instance

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = ingest.Origin.http("127.0.0.1", "test")


def patient(api, n, **fields):
    response = api.generic("POST", "/instances", make_instance(patient_id=f"RECYCLE-{n}", **fields),
                           content_type="application/dicom")
    return response


def test_a_fourth_patient_recycles_the_oldest_unprotected_one(api, settings):
    settings.MAXIMUM_PATIENT_COUNT = 3
    ids = [patient(api, n).json()["ParentPatient"] for n in range(3)]
    assert api.put(f"/patients/{ids[0]}/protected", "1", content_type="text/plain").status_code == 200
    assert api.get(f"/patients/{ids[0]}/protected").content == b"1"
    fourth = patient(api, 3)
    assert fourth.status_code == 200
    remaining = set(Patient.objects.values_list("public_id", flat=True))
    # The oldest (ids[0]) is protected: the next oldest went.
    assert remaining == {ids[0], ids[2], fourth.json()["ParentPatient"]}
    assert api.get(f"/patients/{ids[1]}").status_code == 404
    assert FileDeletion.objects.count() <= 1  # its file is queued for removal (or removed already)
    # Another instance of a stored patient takes no room.
    assert patient(api, 3, instance_number=2, sop_uid="1.2.3.4.5.6").status_code == 200
    assert Patient.objects.count() == 3


def test_reject_mode_answers_orthanc_full_storage(api, settings):
    settings.MAXIMUM_PATIENT_COUNT = 2
    settings.MAXIMUM_STORAGE_MODE = "Reject"
    system = api.get("/system").json()
    assert (system["MaximumPatientCount"], system["MaximumStorageMode"], system["MaximumStorageSize"]) == (2, "Reject", 0)
    assert [patient(api, n).status_code for n in range(2)] == [200, 200]
    refused = patient(api, 2)
    assert refused.status_code == 507
    assert (refused.json()["OrthancStatus"], refused.json()["OrthancError"]) == (19, "The file storage is full")
    assert Patient.objects.count() == 2


def test_every_other_patient_protected_refuses_in_recycle_mode(api, settings):
    settings.MAXIMUM_PATIENT_COUNT = 1
    only = patient(api, 0).json()["ParentPatient"]
    api.put(f"/patients/{only}/protected", "1", content_type="text/plain")
    assert patient(api, 1).status_code == 507
    assert api.put("/patients/nope/protected", "1", content_type="text/plain").status_code == 404
    assert api.put(f"/patients/{only}/protected", "maybe", content_type="text/plain").status_code == 400


def test_storage_size_bound_recycles_by_bytes(api, settings):
    first = patient(api, 0, rows=256, columns=256)  # 128 KB of pixels each
    settings.MAXIMUM_STORAGE_SIZE = 1  # MB: room for 7 such files
    for n in range(1, 12):
        assert patient(api, n, rows=256, columns=256).status_code == 200
    used = Attachment.objects.aggregate(total=Sum("size"))["total"]
    assert 6 * 128 * 1024 < used <= 1024 * 1024 and Patient.objects.count() == 7
    assert api.get(f"/patients/{first.json()['ParentPatient']}").status_code == 404


@pytest.mark.parametrize("mode", ["Recycle", "Reject"])
def test_bounds_are_exact_under_concurrent_stores(settings, storage_dir, mode):
    settings.MAXIMUM_PATIENT_COUNT = 4
    settings.MAXIMUM_STORAGE_MODE = mode
    barrier = threading.Barrier(8)
    outcomes = []

    def store(n):
        try:
            barrier.wait()
            ingest.store(make_instance(patient_id=f"RACE-{n}"), ORIGIN)
            outcomes.append("stored")
        except ingest.ArchiveError as error:
            outcomes.append(type(error).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=store, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Patient.objects.count() == 4
    if mode == "Recycle":
        assert outcomes == ["stored"] * 8
    else:
        assert sorted(outcomes) == ["StorageFull"] * 4 + ["stored"] * 4

"""query.find runs each shape of search as a statement compiled once (query._Statement):
for every kind of condition, level, counter, label constraint, order and page, its
answer equals the ORM's for the same query, on PostgreSQL and (tests/archive/test_on_sqlite.py)
on SQLite."""

import sys

import pytest

from archive import ingest, labels, query
from archive.errors import CredentialsRefused
from archive.models import Level
from archive.query import Query, Typed
from archive.roles import VIEWER, Credentials
from tests.dicomgen import make_instance, uid

UPLOAD = ingest.Origin.http("127.0.0.1", "admin")

PEOPLE = [
    # patient id, name, sex, study date, time, modality, description, accession
    ("P1", "DOE^JANE", "F", "20200315", "101500", "CT", "CT CHEST", "A_1%"),
    ("P2", "DOE^JOHN", "M", "20201231", "235959", "MR", "MR HEAD", "AX1"),
    ("P3", "SMITH^ANNA", "F", "20210102", "080000", "CT", 'Abdo "quoted" \\ text', "A21"),
    ("P4", "Müller^Jürgen", "O", "20210102", "120000.5", "US", "abdomen", "B1"),
]


@pytest.fixture
def archive(db, storage_dir):
    stored = {}
    for patient_id, name, sex, date, time, modality, description, accession in PEOPLE:
        for number in (1, 2):
            result = ingest.store(make_instance(
                patient_id=patient_id, patient_name=name, study_date=date, modality=modality,
                study_description=description, accession_number=accession, instance_number=number,
                PatientSex=sex, StudyTime=time), UPLOAD)
        stored[patient_id] = result
    labels.add_label(Level.STUDY, stored["P1"].study_id, "teaching")
    labels.add_label(Level.STUDY, stored["P3"].study_id, "teaching")
    labels.add_label(Level.STUDY, stored["P3"].study_id, "urgent")
    return stored


STUDIES = "\\".join([uid("P1", "study"), uid("P4", "study")])
SEARCHES = [
    (Level.PATIENT, {}),
    (Level.PATIENT, {"PatientID": "P1"}),
    (Level.PATIENT, {"PatientID": "p1\\P3\\P3"}),
    (Level.PATIENT, {"PatientName": "doe*"}),
    (Level.PATIENT, {"PatientName": "*ANNA"}),
    (Level.PATIENT, {"PatientName": "d?e^j*"}),
    (Level.PATIENT, {"PatientName": "MULLER*"}),
    (Level.PATIENT, {"PatientName": Typed("jurgen muller")}),
    (Level.PATIENT, {"PatientName": Typed("doe")}),
    (Level.PATIENT, {"PatientSex": "F"}),
    (Level.PATIENT, {"PatientSex": "F\\O"}),
    (Level.PATIENT, {"PatientSex": "?"}),
    (Level.PATIENT, {"NumberOfPatientRelatedStudies": "", "NumberOfPatientRelatedInstances": ""}),
    (Level.STUDY, {"StudyDate": "20201231-"}),
    (Level.STUDY, {"StudyDate": "-20201231"}),
    (Level.STUDY, {"StudyDate": "20200101-20210101", "PatientName": "DOE*"}),
    (Level.STUDY, {"StudyTime": "-120000"}),
    (Level.STUDY, {"StudyTime": "100000-"}),
    (Level.STUDY, {"StudyInstanceUID": STUDIES}),
    (Level.STUDY, {"StudyInstanceUID": uid("P2", "study")}),
    (Level.STUDY, {"AccessionNumber": "A_1%"}),
    (Level.STUDY, {"AccessionNumber": "A_*"}),
    (Level.STUDY, {"AccessionNumber": "A?1*"}),
    (Level.STUDY, {"StudyDescription": "CT*"}),
    (Level.STUDY, {"StudyDescription": "abd*"}),
    (Level.STUDY, {"StudyDescription": 'Abdo "quoted" \\ text'}),
    (Level.STUDY, {"StudyDescription": "*HEAD"}),
    (Level.STUDY, {"StudyDescription": "CT CHEST\\MR HEAD"}),
    (Level.STUDY, {"ModalitiesInStudy": "CT"}),
    (Level.STUDY, {"ModalitiesInStudy": "MR\\US", "NumberOfStudyRelatedInstances": "",
                   "NumberOfStudyRelatedSeries": ""}),
    (Level.STUDY, {"PatientSex": "F", "ModalitiesInStudy": "", "SOPClassesInStudy": ""}),
    (Level.STUDY, {"NumberOfPatientRelatedStudies": ""}),
    (Level.SERIES, {"Modality": "CT"}),
    (Level.SERIES, {"Modality": "CT\\MR", "PatientName": "DOE*", "NumberOfSeriesRelatedInstances": ""}),
    (Level.SERIES, {"StudyInstanceUID": uid("P3", "study"), "SeriesDescription": "AX*"}),
    (Level.INSTANCE, {"SOPInstanceUID": uid(uid(uid("P2", "study"), "series"), 2)}),
    (Level.INSTANCE, {"InstanceNumber": "2", "StudyDate": "2021*"}),
    (Level.INSTANCE, {"PatientID": "P4", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}),
]
OPTIONS = [
    {},
    {"limit": 1},
    {"limit": 2, "offset": 1},
    {"offset": 1},
    {"case_sensitive_names": True},
    {"order": ("-study_date",)},
    {"labels": ("teaching",)},
    {"labels": ("teaching", "urgent")},
    {"labels": ("urgent",), "labels_constraint": "Any"},
    {"labels": ("urgent",), "labels_constraint": "None"},
]
KEYS = ["PatientID", "PatientName", "StudyDescription", "InstanceNumber", "NumberOfStudyRelatedInstances"]


def _by_orm(search):
    queryset, wanted = query._matching(search, KEYS)
    end = None if search.limit is None else search.offset + search.limit + 1
    rows = list(queryset[search.offset:end])
    more = search.limit is not None and len(rows) > search.limit
    return query._matches(search.level, rows[:search.limit], wanted), more


def _answer(found):
    matches, more = found
    return [(m.row.pk, m.row.public_id, m.values) for m in matches], more


@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(o) or "plain" for o in OPTIONS])
def test_every_shape_of_search_answers_as_the_orm(archive, options, reader):
    if options.get("order") and options["order"][0].lstrip("-") == "study_date":
        searches = [s for s in SEARCHES if s[0] == Level.STUDY]
    elif options.get("labels"):
        searches = [s for s in SEARCHES if s[0] == Level.STUDY]
    else:
        searches = SEARCHES
    answered = 0
    for level, criteria in searches:
        search = Query(level, dict(criteria), **options)
        expected = _answer(_by_orm(search))
        assert _answer(query.find(search, return_keys=KEYS)) == expected, (level, criteria)
        # Once compiled, the statement is taken again: the same answer.
        assert _answer(query.find(search, return_keys=KEYS)) == expected, (level, criteria)
        # A request's remembered credentials checked in the statement: the same answer.
        held = reader()
        assert _answer(query.find(search, return_keys=KEYS, credentials=held)) == expected, (level, criteria)
        assert held.confirmed == bool(expected[0]) and not held.refused
        answered += bool(expected[0])
    assert answered >= len(searches) // 3  # the corpus finds things, not only nothing


def test_one_statement_per_shape_whatever_the_values(archive):
    query._STATEMENTS.clear()
    for patient_id in ("P1", "P2", "P3", "nobody", "P_%", "D'OE"):
        query.find(Query(Level.PATIENT, {"PatientID": patient_id, "PatientName": "*"}))
    for prefix in ("DOE*", "SMITH*", "%*", "_*"):
        query.find(Query(Level.PATIENT, {"PatientName": prefix}))
    assert len(query._STATEMENTS) == 2
    found, _ = query.find(Query(Level.PATIENT, {"PatientName": "_*"}))
    assert found == []  # an underscore is a character, not LIKE's wildcard
    query.find(Query(Level.PATIENT, {"PatientID": "P1\\P2"}))
    query.find(Query(Level.PATIENT, {"PatientID": "P1\\P2\\P3"}))
    assert len(query._STATEMENTS) == 4  # a list's length is part of the shape


def test_the_statements_kept_are_bounded(archive, monkeypatch):
    monkeypatch.setattr(query, "_STATEMENTS_KEPT", 3)
    query._STATEMENTS.clear()
    for n in range(2, 9):
        query.find(Query(Level.PATIENT, {"PatientID": "\\".join(["P1"] * n)}))
    assert len(query._STATEMENTS) == 3


def test_threads_keeping_statements_at_once_keep_the_bound(monkeypatch):
    import threading

    monkeypatch.setattr(query, "_STATEMENTS", {})
    monkeypatch.setattr(query, "_STATEMENTS_KEPT", 8)
    failures = []

    def keep(start):
        try:
            for n in range(start, start + 5000):
                query._keep(("shape", n), object())
        except Exception as error:  # noqa: BLE001 (the test reports any)
            failures.append(error)

    # Threads switched every microsecond: without the lock, a few of them raise
    # "dictionary changed size during iteration" here, and the bound is passed.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=keep, args=(i * 5000,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == [] and len(query._STATEMENTS) <= 8


def test_a_form_of_value_it_cannot_rebuild_is_left_to_the_orm(archive, monkeypatch, reader, django_user_model):
    monkeypatch.setattr(query, "_slot_form", lambda param: (_ for _ in ()).throw(query._Unknown(param)))
    query._STATEMENTS.clear()
    search = Query(Level.PATIENT, {"PatientID": "P1"})
    assert _answer(query.find(search, return_keys=KEYS)) == _answer(_by_orm(search))
    assert list(query._STATEMENTS.values()) == [query._UNSHAPED]
    held = reader()
    assert _answer(query.find(search, return_keys=KEYS, credentials=held)) == _answer(_by_orm(search))
    assert held.confirmed
    django_user_model.objects.filter(username="reader").update(is_active=False)
    refused = reader()
    with pytest.raises(CredentialsRefused):
        query.find(search, return_keys=KEYS, credentials=refused)
    assert refused.refused


def test_credentials_that_no_longer_hold_refuse_a_search_that_finds(archive, reader, django_user_model):
    search = Query(Level.STUDY, {"PatientID": "P1"}, limit=5)
    held = reader()
    query.find(search, credentials=held)
    user = django_user_model.objects.get(username="reader")
    for change in ({"is_active": False}, {"password": "md5$another$hash"}):
        refused = Credentials(user.pk, user.password, VIEWER)
        type(user).objects.filter(pk=user.pk).update(**change)
        with pytest.raises(CredentialsRefused):
            query.find(search, credentials=refused)
        assert refused.refused and not refused.confirmed
        type(user).objects.filter(pk=user.pk).update(is_active=True, password=user.password)
    user.groups.clear()  # the role taken away
    with pytest.raises(CredentialsRefused):
        query.find(search, credentials=reader())
    # Nothing found, nothing checked: the access check checks them itself then.
    unchecked = reader()
    assert query.find(Query(Level.STUDY, {"PatientID": "nobody"}), credentials=unchecked) == ([], False)
    assert not unchecked.confirmed and not unchecked.refused


@pytest.fixture
def reader(db, django_user_model):
    """Credentials of a viewer as a request remembers them, fresh each call."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user("reader", password="pw")
    user.groups.add(Group.objects.get_or_create(name=VIEWER)[0])
    return lambda: Credentials(user.pk, django_user_model.objects.get(pk=user.pk).password, VIEWER)

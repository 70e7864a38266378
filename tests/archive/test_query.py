"""query.find and query.find_page: the one matching engine, called directly."""

import pytest
from django.db import connection

from archive import ingest, query, tags
from archive.errors import InvalidQuery
from archive.models import Level
from archive.query import Query
from tests.dicomgen import make_instance, uid

UPLOAD = ingest.Origin.http("127.0.0.1", "admin")

PEOPLE = [
    # patient id, name, study date, modality
    ("P1", "DOE^JANE", "20200315", "CT"),
    ("P2", "DOE^JOHN", "20201231", "MR"),
    ("P3", "SMITH^ANNA", "20210102", "CT"),
]


@pytest.fixture
def archive(db, storage_dir):
    for patient_id, name, date, modality in PEOPLE:
        ingest.store(make_instance(patient_id=patient_id, patient_name=name, study_date=date, modality=modality),
                     UPLOAD)


def found(level, criteria, **options):
    matches, _ = query.find(Query(level, criteria, **options), return_keys=["PatientID"])
    return sorted(m.values["PatientID"] for m in matches)


@pytest.mark.parametrize("name, expected", [
    ("doe*", ["P1", "P2"]),
    ("DOE^J*", ["P1", "P2"]),
    ("*anna", ["P3"]),
    ("doe^jo?n", ["P2"]),
    ("d?e^*e", ["P1"]),
    ("doe^jane", ["P1"]),
    ("doe", []),
])
def test_patient_name_wildcards_match_case_insensitively(archive, name, expected):
    assert found(Level.PATIENT, {"PatientName": name}) == expected


def test_case_sensitive_names_match_the_spelling_as_stored(archive):
    assert found(Level.PATIENT, {"PatientName": "doe*"}, case_sensitive_names=True) == []
    assert found(Level.PATIENT, {"PatientName": "DOE*"}, case_sensitive_names=True) == ["P1", "P2"]


def test_other_attributes_than_names_match_case_sensitively(archive):
    # PS3.4 C.2.2.2.4: only person names may ignore case; SQLite's LIKE would.
    assert found(Level.STUDY, {"StudyDescription": "ct*"}) == []
    assert found(Level.STUDY, {"StudyDescription": "CT*"}) == ["P1", "P2", "P3"]
    assert found(Level.STUDY, {"StudyDescription": "ct chest"}) == []


@pytest.mark.parametrize("dates, expected", [
    ("20200101-20201231", ["P1", "P2"]),
    ("20201231-", ["P2", "P3"]),
    ("-20200315", ["P1"]),
    ("20200315", ["P1"]),
])
def test_study_date_ranges_include_their_bounds(archive, dates, expected):
    assert found(Level.STUDY, {"StudyDate": dates}) == expected


def test_range_without_bounds_is_invalid(archive):
    with pytest.raises(InvalidQuery):
        query.find(Query(Level.STUDY, {"StudyDate": "-"}))


def test_list_of_uids_matches_each_of_them(archive):
    studies = "\\".join([uid("P1", "study"), uid("P3", "study")])
    assert found(Level.STUDY, {"StudyInstanceUID": studies}) == ["P1", "P3"]


def test_keys_of_the_levels_above_restrict_the_answer(archive):
    assert found(Level.SERIES, {"PatientName": "DOE*", "Modality": "CT"}) == ["P1"]


def test_limit_cuts_the_answer_and_says_there_is_more(archive):
    matches, more = query.find(Query(Level.PATIENT, limit=2))
    assert (len(matches), more) == (2, True)
    matches, more = query.find(Query(Level.PATIENT, limit=3))
    assert (len(matches), more) == (3, False)


def test_unknown_level_is_an_invalid_query(archive):
    with pytest.raises(InvalidQuery):
        query.find(Query("Equipment", {"PatientName": "DOE*"}))
    with pytest.raises(InvalidQuery):
        query.find_page(Query("Equipment"))


def test_a_page_of_no_matches_is_an_invalid_query(archive):
    with pytest.raises(InvalidQuery):
        query.find_page(Query(Level.STUDY), size=0)


def page_of(number, size=2, order=("-study_date",)):
    page = query.find_page(Query(Level.STUDY, order=order), return_keys=["PatientID"], page=number, size=size)
    return page, [m.values["PatientID"] for m in page.matches]


def test_find_page_sorts_by_the_order_columns_and_counts_the_total(archive):
    first, patients = page_of(1)
    assert patients == ["P3", "P2"]
    assert (first.total, first.pages, first.has_previous, first.has_next) == (3, 2, False, True)
    assert (first.first_index, first.last_index) == (1, 2)

    second, patients = page_of(2)
    assert patients == ["P1"]
    assert (second.has_previous, second.has_next, second.first_index, second.last_index) == (True, False, 3, 3)

    assert page_of(1, order=("study_date",))[1] == ["P1", "P2"]


def test_find_page_clamps_the_page_number(archive):
    beyond, patients = page_of(99)
    assert (beyond.number, patients) == (2, ["P1"])
    before, patients = page_of(0)
    assert (before.number, patients) == (1, ["P3", "P2"])


def test_empty_answer_is_one_empty_page(db):
    page = query.find_page(Query(Level.STUDY, {"PatientName": "NOBODY"}), page=3)
    assert (page.matches, page.total, page.number, page.pages, page.first_index) == ([], 0, 1, 1, 0)


@pytest.mark.parametrize("level, criteria", [
    (Level.PATIENT, {"PatientName": "doe*"}),
    (Level.STUDY, {"StudyDate": "20201231-"}),
    (Level.SERIES, {"Modality": "CT"}),
    (Level.INSTANCE, {"PatientID": "P2"}),
    (Level.STUDY, {}),
])
def test_find_and_find_page_agree_on_the_matches(archive, level, criteria):
    matches, _ = query.find(Query(level, criteria))
    page = query.find_page(Query(level, criteria), size=100)
    assert [m.row.pk for m in page.matches] == [m.row.pk for m in matches]
    assert page.total == len(matches) > 0


def test_patient_counters_asked_at_study_level_are_the_patients_or_empty(archive):
    ingest.store(make_instance(patient_id="P1", patient_name="DOE^JANE", study_uid=uid("P1", "second study")), UPLOAD)
    # Study Root C-FIND may carry them at the study level (PS3.4 Table C.6-5); Orthanc
    # computes them at the patient level only and leaves them empty elsewhere.
    keys = ["NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfStudyRelatedSeries"]
    matches, _ = query.find(Query(Level.STUDY, {"PatientID": "P1"}), return_keys=keys)

    assert len(matches) == 2
    for match in matches:
        assert match.values["NumberOfStudyRelatedSeries"] == "1"
        assert match.values["NumberOfPatientRelatedStudies"] in ("", "2")
        assert match.values["NumberOfPatientRelatedSeries"] in ("", "2")


def test_wildcards_cost_time_linear_in_the_pattern_on_sqlite():
    # Python's backtracking re (SQLite's REGEXP) took 29 s on `*a*b*c...*0` with 12
    # stars; the SQLite form commits each run at its first occurrence. The plain form
    # already takes seconds with 8 stars on this value; the SQLite form with 256
    # stars must be as quick as with 4 (generous bound: a loaded machine).
    import re
    import time
    value = "A" * 64
    for stars in (4, 16, 64, 256):
        pattern = re.compile(query.wildcard_regex("*" + "*".join("A" * stars) + "*0", "sqlite"))
        started = time.perf_counter()
        assert pattern.search(value) is None
        assert time.perf_counter() - started < 0.05, stars
    assert re.search(query.wildcard_regex("*A*A*A*0", "sqlite"), "xAyAAz0")


@pytest.mark.parametrize("pattern", ["*", "a*", "*a", "a*b", "?a*", "*a?b*", "a**b", "*?*", "ab", "a?", "***"])
def test_both_forms_of_a_wildcard_match_as_fnmatch_does(pattern):
    import fnmatch
    import itertools
    import re
    for length in range(5):
        for letters in itertools.product("ab", repeat=length):
            value = "".join(letters)
            expected = fnmatch.fnmatchcase(value, pattern)
            for vendor in ("sqlite", "postgresql"):
                assert (re.search(query.wildcard_regex(pattern, vendor), value) is not None) == expected, \
                    (pattern, value, vendor)


def test_too_many_wildcards_or_values_are_invalid_queries(archive, settings):
    settings.QUERY_MAX_WILDCARDS = 4
    settings.QUERY_MAX_LIST = 3
    assert found(Level.PATIENT, {"PatientName": "*D*O*E*"}) == ["P1", "P2"]
    with pytest.raises(InvalidQuery, match="PACS_QUERY_MAX_WILDCARDS"):
        query.find(Query(Level.PATIENT, {"PatientName": "*D*O*E*^*"}))
    with pytest.raises(InvalidQuery, match="PACS_QUERY_MAX_LIST"):
        query.find(Query(Level.STUDY, {"StudyInstanceUID": "1.2\\1.3\\1.4\\1.5"}))


def test_result_limit_has_a_default_and_a_maximum(settings):
    settings.FIND_DEFAULT_LIMIT, settings.FIND_MAX_LIMIT = 100, 500
    assert (query.result_limit(), query.result_limit(20), query.result_limit(10**6)) == (100, 20, 500)


def test_modalities_in_study_are_its_series_modalities_each_once_in_order(archive):
    study = uid("P1", "study")
    for number, modality in enumerate(["SR", "CT", "PR", "CT"], start=2):
        ingest.store(make_instance(patient_id="P1", patient_name="DOE^JANE", study_uid=study, modality=modality,
                                   series_uid=uid(study, f"series {number}")), UPLOAD)
    keys = ["ModalitiesInStudy", "SOPClassesInStudy"]
    matches, _ = query.find(Query(Level.STUDY, {"PatientID": "P1"}), return_keys=keys)
    assert [m.values["ModalitiesInStudy"] for m in matches] == ["CT\\PR\\SR"]
    assert matches[0].values["SOPClassesInStudy"] == "1.2.840.10008.5.1.4.1.1.2"
    matches, _ = query.find(Query(Level.STUDY, {"PatientID": "P3"}), return_keys=keys)
    assert [m.values["ModalitiesInStudy"] for m in matches] == ["CT"]
    # Not a key of the series level: empty there, as Orthanc leaves it.
    matches, _ = query.find(Query(Level.SERIES, {"PatientID": "P1"}), return_keys=keys)
    assert {m.values["ModalitiesInStudy"] for m in matches} == {""}


PREFIX_NAMES = ["DOE^JANE", "DOE^JOHN", "DOEZ^A", "DOE", "DOF^A", "do^e", "Müller^Jürgen", "MULLERS^A", "MULLES^Z",
                "Ÿ^Y", "YŸ^Y", "DO%^E", "DO_^E", "D", "ØSTER^A", "ÖSTER^B", "ΑΒΓ^Δ", "ΑΒΔ^E", "\ud7fb^A", "\ue000^B"]


@pytest.fixture
def named(db, storage_dir):
    for index, name in enumerate(PREFIX_NAMES):
        ingest.store(make_instance(patient_id=f"N{index}", patient_name=name, SpecificCharacterSet="ISO_IR 192"), UPLOAD)


@pytest.mark.parametrize("prefix", ["DOE", "doe^", "DO", "D", "MULLER", "müller^j", "Ÿ", "DO%", "DO_", "DOZ", "Z", "Ø", "øst",
                                    "ΑΒ", "αβγ", "\ud7fb", "\ud7fb^"])
def test_a_prefix_finds_the_names_that_start_with_it_once_normalised(named, prefix):
    expected = sorted(f"N{i}" for i, name in enumerate(PREFIX_NAMES)
                      if tags.normalize(name).startswith(tags.normalize(prefix)))
    assert found(Level.PATIENT, {"PatientName": prefix + "*"}) == expected
    assert found(Level.STUDY, {"PatientName": prefix + "*"}) == expected


def test_successor_is_the_least_text_after_every_text_with_the_prefix():
    assert query._successor("DOE") == "DOF"
    assert query._successor("A\ud7fe") == "A\ud7ff"
    assert query._successor("A\ud7ff") == "A\ue000"
    assert query._successor("A\U0010ffff") is None


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the plan of SQLite's search")
@pytest.mark.parametrize("level, keyword, index", [
    (Level.STUDY, "PatientName", "patient_name_norm"),
    (Level.STUDY, "PatientID", "patient_id_norm"),
    (Level.STUDY, "AccessionNumber", "accession_number_norm"),
    (Level.PATIENT, "PatientName", "patient_name_norm"),
])
def test_a_prefix_search_on_sqlite_reads_the_index_not_the_whole_archive(named, level, keyword, index):
    connection.ensure_connection()
    statements = []
    connection.connection.set_trace_callback(statements.append)
    try:
        query.find(Query(level, {keyword: "DOE*"}, limit=20), return_keys=["PatientID"])
    finally:
        connection.connection.set_trace_callback(None)
    search = next(s for s in statements if s.lstrip().upper().startswith("SELECT") and "LIMIT" in s)
    plan = " | ".join(row[3] for row in connection.connection.execute("EXPLAIN QUERY PLAN " + search))
    assert "USING INDEX" in plan and index in plan, plan
    assert f"SCAN {level.lower()}" not in plan and "SCAN study" not in plan, plan

"""QIDO-RS: searching studies, series and instances through /dicom-web."""

import pytest

from tests.dicomgen import make_instance, uid
from tests.api.dicomweb.support import pydicom_file, store, study, tag, value


STUDY_REQUIRED = {"StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
                  "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                  "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                  "RetrieveURL"}


def search(api, path, **params):
    return api.get(f"/dicom-web/{path}", params)


def patient_ids(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    return sorted(value(answer, "PatientID")[0] for answer in response.json())


@pytest.fixture
def patients(api):
    """Three patients, one study each, of different names, dates and modalities."""
    store(api, make_instance(patient_id="A1", patient_name="SMITH^JOHN", study_date="20200105"))
    store(api, make_instance(patient_id="A2", patient_name="Smithers^Wayland", study_date="20201231", modality="MR"))
    store(api, make_instance(patient_id="B1", patient_name="JONES^ANN", study_date="20210301"))


def test_study_answer_has_the_required_attributes_in_dicom_json(api):
    study(api, 2, patient_id="P1")
    [answer] = search(api, "studies").json()
    assert {tag(k) for k in STUDY_REQUIRED} <= set(answer)
    assert answer[tag("PatientName")] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert answer[tag("NumberOfStudyRelatedInstances")] == {"vr": "IS", "Value": [2]}
    assert value(answer, "ModalitiesInStudy") == ["CT"]
    assert value(answer, "InstanceAvailability") == ["ONLINE"]
    study_uid = value(answer, "StudyInstanceUID")[0]
    assert value(answer, "RetrieveURL") == [f"http://testserver/dicom-web/studies/{study_uid}"]


def test_wildcard_matching_on_names_ignores_case(api, patients):
    assert patient_ids(search(api, "studies", PatientName="SMITH*")) == ["A1", "A2"]
    assert patient_ids(search(api, "studies", PatientName="smith^j*")) == ["A1"]
    assert patient_ids(search(api, "studies", PatientName="?ONES*")) == ["B1"]


def test_attributes_are_named_by_keyword_or_by_tag(api, patients):
    assert patient_ids(search(api, "studies", **{"00100020": "B1"})) == ["B1"]
    assert patient_ids(search(api, "studies", PatientID="A2")) == ["A2"]


def test_date_ranges(api, patients):
    assert patient_ids(search(api, "studies", StudyDate="20200101-20201231")) == ["A1", "A2"]
    assert patient_ids(search(api, "studies", StudyDate="20201231-")) == ["A2", "B1"]
    assert patient_ids(search(api, "studies", StudyDate="-20200105")) == ["A1"]


def test_uid_lists_by_comma_or_backslash(api, patients):
    first, third = uid("A1", "study"), uid("B1", "study")
    assert patient_ids(search(api, "studies", StudyInstanceUID=f"{first},{third}")) == ["A1", "B1"]
    assert patient_ids(search(api, "studies", StudyInstanceUID=f"{first}\\{third}")) == ["A1", "B1"]


def test_modalities_in_study_matches_the_series_modality(api, patients):
    assert patient_ids(search(api, "studies", ModalitiesInStudy="MR")) == ["A2"]


def test_includefield_by_keyword_tag_and_all(api):
    study(api, patient_id="P1")
    plain = search(api, "studies").json()[0]
    assert tag("StudyDescription") not in plain and tag("InstitutionName") not in plain
    by_keyword = search(api, "studies", includefield="StudyDescription").json()[0]
    assert value(by_keyword, "StudyDescription") == ["CT CHEST"]
    by_tag = search(api, "studies", includefield="00080080").json()[0]
    assert value(by_tag, "InstitutionName") == ["General Hospital"]
    everything = search(api, "studies", includefield="all").json()[0]
    assert value(everything, "StudyDescription") == ["CT CHEST"]
    assert value(everything, "InstitutionName") == ["General Hospital"]


def test_limit_and_offset_page_through_results_with_a_warning_when_more_exist(api):
    for n in range(5):
        store(api, make_instance(patient_id=f"P{n}"))
    response = search(api, "studies", limit="2", offset="1")
    assert patient_ids(response) == ["P1", "P2"]
    assert "additional results" in response["Warning"]
    last = search(api, "studies", limit="2", offset="4")
    assert patient_ids(last) == ["P4"] and "Warning" not in last


def test_no_match_is_200_with_an_empty_array(api, patients):
    # CP-2473: 200 with an empty payload; OHIF and dicomweb-client parse the JSON.
    response = search(api, "studies", PatientID="NOBODY")
    assert response.status_code == 200 and response.json() == []
    assert response["Content-Type"] == "application/dicom+json"
    assert search(api, "studies", offset="10").json() == []


@pytest.mark.parametrize("params, words", [
    ({"Foo": "1"}, "Foo"),
    ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching"),
    ({"00400275.00400009": "X"}, "sequences"),
    ({"00091010": "X"}, "private"),
    ({"includefield": "NotAKeyword"}, "NotAKeyword"),
])
def test_unknown_or_invalid_parameters_are_400_with_a_message(api, params, words):
    response = search(api, "studies", **params)
    assert response.status_code == 400
    assert words in response.json()["Details"]


def test_fuzzymatching_is_accepted_either_way(api, patients):
    assert patient_ids(search(api, "studies", PatientName="smith*", fuzzymatching="false")) == ["A1", "A2"]
    assert patient_ids(search(api, "studies", PatientName="smith*", fuzzymatching="true")) == ["A1", "A2"]


def test_fuzzymatching_finds_a_name_by_any_part_of_it(api, patients):
    assert search(api, "studies", PatientName="john").json() == []
    assert patient_ids(search(api, "studies", PatientName="john", fuzzymatching="true")) == ["A1"]
    assert patient_ids(search(api, "studies", PatientName="wayland", fuzzymatching="true")) == ["A2"]


def test_orderby_sorts_on_indexed_attributes_either_way(api, patients):
    by_date = search(api, "studies", orderby="StudyDate")
    assert [value(a, "PatientID")[0] for a in by_date.json()] == ["A1", "A2", "B1"]
    assert "Warning" not in by_date
    by_date_descending = search(api, "studies", orderby="-StudyDate")
    assert [value(a, "PatientID")[0] for a in by_date_descending.json()] == ["B1", "A2", "A1"]
    by_name = [value(a, "PatientID")[0] for a in search(api, "studies", orderby="PatientName").json()]
    assert by_name[0] == "B1"  # JONES before SMITH


def test_orderby_an_attribute_the_index_cannot_sort_is_ignored_with_a_warning(api, patients):
    response = search(api, "studies", orderby="PatientAge")
    assert patient_ids(response) == ["A1", "A2", "B1"]
    assert "PatientAge" in response["Warning"] and "order" in response["Warning"]


def test_keys_the_index_cannot_match_are_ignored_with_a_warning(api, patients):
    response = search(api, "studies", PatientAge="040Y")
    assert patient_ids(response) == ["A1", "A2", "B1"]
    assert "PatientAge" in response["Warning"]


def test_included_attributes_the_index_does_not_hold_are_named_in_a_warning(api):
    study(api, patient_id="P1")
    response = search(api, "instances", includefield="PatientAge")
    assert tag("PatientAge") not in response.json()[0]
    assert "PatientAge" in response["Warning"]


def test_instances_carry_what_a_viewer_needs_before_fetching_them(api):
    # PS3.18 Table 6.7.1-2a: Rows, Columns, BitsAllocated, NumberOfFrames.
    store(api, open(pydicom_file("SC_rgb_rle_2frame.dcm"), "rb").read())
    [answer] = search(api, "instances").json()
    assert answer[tag("Rows")] == {"vr": "US", "Value": [100]}
    assert answer[tag("Columns")] == {"vr": "US", "Value": [100]}
    assert answer[tag("BitsAllocated")] == {"vr": "US", "Value": [8]}
    assert answer[tag("NumberOfFrames")] == {"vr": "IS", "Value": [2]}


def test_a_number_that_does_not_parse_is_kept_as_a_string(api):
    # badVR.dcm has NumberOfFrames "1A"; F.2.3 lets IS be a JSON string.
    store(api, open(pydicom_file("badVR.dcm"), "rb").read())
    [answer] = search(api, "instances").json()
    assert answer[tag("NumberOfFrames")] == {"vr": "IS", "Value": ["1A"]}


def test_series_of_a_study_and_of_all_studies(api):
    study(api, 3, patient_id="P1")
    study(api, 1, patient_id="P2")
    study_uid = uid("P1", "s1")
    [series] = search(api, f"studies/{study_uid}/series").json()
    assert value(series, "NumberOfSeriesRelatedInstances") == [3]
    assert value(series, "Modality") == ["CT"]
    assert value(series, "RetrieveURL")[0].endswith(f"/studies/{study_uid}/series/{uid('P1', 's1', 'series')}")
    all_series = search(api, "series").json()
    assert len(all_series) == 2
    # Without a study in the path, the study's attributes come along (PS3.18 §10.6.3.3).
    assert {value(s, "PatientID")[0] for s in all_series} == {"P1", "P2"}


def test_instances_of_a_series_a_study_and_of_everything(api):
    study(api, 3, patient_id="P1")
    study(api, 2, patient_id="P2")
    study_uid, series_uid = uid("P1", "s1"), uid("P1", "s1", "series")
    instances = search(api, f"studies/{study_uid}/series/{series_uid}/instances").json()
    assert [value(i, "InstanceNumber") for i in instances] == [[1], [2], [3]]
    assert value(instances[0], "SOPClassUID") == ["1.2.840.10008.5.1.4.1.1.2"]
    assert value(instances[0], "RetrieveURL")[0].endswith(
        f"/studies/{study_uid}/series/{series_uid}/instances/{value(instances[0], 'SOPInstanceUID')[0]}")
    of_study = search(api, f"studies/{study_uid}/instances").json()
    assert len(of_study) == 3 and value(of_study[0], "Modality") == ["CT"]
    assert len(search(api, "instances").json()) == 5
    assert len(search(api, "instances", PatientID="P2").json()) == 2


def test_unknown_study_in_the_path_finds_nothing(api, patients):
    assert search(api, "studies/1.2.3/series").json() == []


def test_urls_use_the_public_url_when_set(api, patients, settings):
    settings.PUBLIC_URL = "https://pacs.example.org/archive"
    answer = search(api, "studies", PatientID="B1").json()[0]
    assert value(answer, "RetrieveURL")[0].startswith("https://pacs.example.org/archive/dicom-web/studies/")


def test_a_host_header_without_its_port_gets_the_port_the_client_connected_to(api, patients, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pacs.local"]  # not a name of this machine (pacsweb/browsers.py)
    # dicomweb-client sends Host without the port; a proxy (X-Forwarded-For) knows better.
    direct = api.get("/dicom-web/studies", {"PatientID": "B1"}, HTTP_HOST="pacs.local", SERVER_PORT="8042").json()[0]
    assert value(direct, "RetrieveURL")[0].startswith("http://pacs.local:8042/dicom-web/")
    proxied = api.get("/dicom-web/studies", {"PatientID": "B1"}, HTTP_HOST="pacs.local", SERVER_PORT="8042",
                      HTTP_X_FORWARDED_FOR="10.0.0.1").json()[0]
    assert value(proxied, "RetrieveURL")[0].startswith("http://pacs.local/dicom-web/")


def test_forwarded_headers_count_only_from_a_trusted_proxy(api, patients, settings):
    forwarded = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "pacs.example.org",
                 "HTTP_X_FORWARDED_PORT": "8443"}
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "pacs.example.org"]
    settings.FORWARDED_ALLOW_IPS = "10.0.0.1"  # the test client is 127.0.0.1: not a trusted proxy
    untrusted = api.get("/dicom-web/studies", {"PatientID": "B1"}, **forwarded).json()[0]
    assert value(untrusted, "RetrieveURL")[0].startswith("http://testserver/dicom-web/")
    settings.FORWARDED_ALLOW_IPS = "10.0.0.1,127.0.0.0/8"
    trusted = api.get("/dicom-web/studies", {"PatientID": "B1"}, **forwarded).json()[0]
    assert value(trusted, "RetrieveURL")[0].startswith("https://pacs.example.org:8443/dicom-web/")


def test_only_dicom_json_is_served(api, patients):
    response = api.get("/dicom-web/studies", HTTP_ACCEPT="application/dicom+xml")
    assert response.status_code == 406
    assert api.get("/dicom-web/studies", HTTP_ACCEPT="application/json").status_code == 200


@pytest.mark.parametrize("count", [1, 20])
def test_searches_cost_the_same_queries_for_one_or_many_results(api, count, django_assert_max_num_queries):
    for n in range(count):
        store(api, make_instance(patient_id=f"P{n}", rows=8, columns=8))
    with django_assert_max_num_queries(5):
        assert len(search(api, "studies", includefield="all").json()) == count
    with django_assert_max_num_queries(5):
        assert len(search(api, "series").json()) == count
    with django_assert_max_num_queries(5):
        assert len(search(api, "instances").json()) == count

"""POST /{level}/{id}/modify and /anonymize: new resources through the ingest path,
Orthanc's answers and refusals, UIDs remapped consistently, no PHI left behind."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, UID_dictionary

from archive import confidentiality, transcode
from archive.models import Instance, Metadata, Patient
from tests.dicomgen import make_instance, uid

# A synchronous modification runs its job in the request's thread, which closes its
# connection at the end as every job run does: the test database cannot be one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

ANSWER_KEYS = {"Description", "FailedInstancesCount", "ID", "InstancesCount", "IsAnonymization", "Path",
               "PatientID", "Type"}


def post(api, url, body):
    return api.post(url, body, content_type="application/json")


def store(api, data):
    response = api.generic("POST", "/instances", data, content_type="application/dicom")
    assert response.status_code == 200, response.content
    return response.json()


def study(api, count=3, patient_id="EDIT-1", **fields):
    answers = [store(api, make_instance(patient_id=patient_id, instance_number=n + 1, **fields)) for n in range(count)]
    return answers[0]["ParentStudy"], answers


def files_of(api, level_plural, public_id):
    ids = [i["ID"] for i in api.get(f"/{level_plural}/{public_id}/instances").json()]
    return [pydicom.dcmread(io.BytesIO(b"".join(api.get(f"/instances/{i}/file").streaming_content))) for i in ids]


def test_modifying_a_study_stores_a_new_one_with_orthanc_answer(api):
    source, answers = study(api)
    response = post(api, f"/studies/{source}/modify", {"Replace": {"PatientName": "FIXED^NAME"}})
    assert response.status_code == 200, response.content
    result = response.json()
    assert set(result) == ANSWER_KEYS
    assert result["Type"] == "Study" and result["InstancesCount"] == 3 and result["IsAnonymization"] is False
    assert result["ID"] != source and result["PatientID"] == answers[0]["ParentPatient"]
    assert api.get(f"/studies/{source}").status_code == 200  # KeepSource defaults to true
    new, old = files_of(api, "studies", result["ID"]), files_of(api, "studies", source)
    assert {str(f.PatientName) for f in new} == {"FIXED^NAME"}
    assert len({f.StudyInstanceUID for f in new}) == 1 and new[0].StudyInstanceUID != old[0].StudyInstanceUID
    assert len({f.SeriesInstanceUID for f in new}) == 1 and not {f.SOPInstanceUID for f in new} & {f.SOPInstanceUID for f in old}
    # The pixel data are byte-identical.
    assert sorted(f.PixelData for f in new) == sorted(f.PixelData for f in old)
    assert Metadata.objects.get(resource_id=result["ID"], name="ModifiedFrom").value == source
    instance = new[0].SOPInstanceUID
    assert Metadata.objects.filter(name="ModifiedFrom", resource_id=Instance.objects.get(sop_instance_uid=instance).public_id).exists()


def test_changing_patient_id_moves_the_study_under_that_patient(api):
    source, _ = study(api, count=2, patient_id="WRONG-ID")
    other_source, other = study(api, count=1, patient_id="RIGHT-ID", study_uid=uid("right", "study"))
    response = post(api, f"/studies/{source}/modify",
                    {"Replace": {"PatientID": "RIGHT-ID", "PatientName": "RIGHT^PATIENT"}, "Force": True,
                     "KeepSource": False})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["PatientID"] == other[0]["ParentPatient"]
    assert sorted(api.get(f"/patients/{other[0]['ParentPatient']}").json()["Studies"]) == sorted([other_source, result["ID"]])
    assert api.get(f"/studies/{source}").status_code == 404
    assert not Patient.objects.filter(patient_id="WRONG-ID").exists()


@pytest.mark.parametrize("body, tag, verb", [
    ({"Keep": ["StudyInstanceUID"]}, "StudyInstanceUID", "kept"),
    ({"Replace": {"SeriesInstanceUID": "1.2.3"}}, "SeriesInstanceUID", "replaced"),
    ({"Remove": ["PatientID"]}, "PatientID", "removed"),
])
def test_identifiers_need_force_with_orthanc_error(api, body, tag, verb):
    source, _ = study(api, count=1)
    for route in ("modify", "anonymize"):
        response = post(api, f"/studies/{source}/{route}", body)
        assert response.status_code == 400
        assert response.json()["Details"] == \
            f'Marking tag "{tag}" as to be {verb} requires the "Force" option to be set to true'
        assert response.json()["OrthancStatus"] == 8


def test_bad_requests(api):
    source, answers = study(api, count=1)
    assert post(api, f"/studies/{source}/modify", {"Replace": {"PatientName": 3}}).json()["OrthancStatus"] == 5
    assert post(api, f"/studies/{source}/modify", {"Replace": {"NoSuchTag": "x"}}).status_code == 400
    assert post(api, f"/patients/{answers[0]['ParentPatient']}/modify", {"Replace": {"PatientName": "X"}}).json()[
        "Details"] == "When modifying a patient, her PatientID is required to be modified"
    assert post(api, "/studies/nope/modify", {}).status_code == 404
    same = post(api, f"/studies/{source}/modify", {"Replace": {"PatientName": "X"}, "Transcode": "1.2.840.10008.1.2.1"})
    assert same.status_code == 200


def test_modifying_an_instance_answers_the_file_and_stores_nothing(api):
    _, answers = study(api, count=1)
    before = Instance.objects.count()
    response = post(api, f"/instances/{answers[0]['ID']}/modify", {"Replace": {"PatientName": "ONE^FILE"}})
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    edited = pydicom.dcmread(io.BytesIO(response.content))
    original = files_of(api, "studies", answers[0]["ParentStudy"])[0]
    assert str(edited.PatientName) == "ONE^FILE"
    assert edited.SOPInstanceUID != original.SOPInstanceUID and edited.StudyInstanceUID == original.StudyInstanceUID
    assert edited.file_meta.MediaStorageSOPInstanceUID == edited.SOPInstanceUID
    assert edited.PixelData == original.PixelData
    assert Instance.objects.count() == before


def test_paths_into_sequences_and_sequence_values_are_edited_as_orthanc(api):
    references = Sequence([Dataset(), Dataset()])
    for n, item in enumerate(references):
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{n}"
    answer = store(api, make_instance(patient_id="PATHS-1", ReferencedImageSequence=references))
    body = {"Replace": {"ReferencedImageSequence[1].ReferencedSOPInstanceUID": "9.9.9",
                        "ReferencedStudySequence[0].ReferencedSOPInstanceUID": "7.7",  # no such item: nothing
                        "ReferencedPerformedProcedureStepSequence": [{"ReferencedSOPInstanceUID": "5.5"}]},
            "Remove": ["ReferencedImageSequence[*].ReferencedSOPClassUID"]}
    for level, public_id in (("instances", answer["ID"]), ("series", answer["ParentSeries"])):
        response = post(api, f"/{level}/{public_id}/modify", body)
        assert response.status_code == 200, response.content
        edited = pydicom.dcmread(io.BytesIO(response.content)) if level == "instances" else \
            files_of(api, "series", response.json()["ID"])[0]
        assert [i.ReferencedSOPInstanceUID for i in edited.ReferencedImageSequence] == ["1.2.3.0", "9.9.9"]
        assert not any("ReferencedSOPClassUID" in i for i in edited.ReferencedImageSequence)
        assert "ReferencedStudySequence" not in edited
        assert edited.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID == "5.5"
    for refused in ({"Replace": {"ReferencedImageSequence[x].ReferencedSOPInstanceUID": "1"}},
                    {"Replace": {"ReferencedImageSequence.ReferencedSOPInstanceUID": "1"}},
                    {"Replace": {"PatientName": [{"PatientID": "1"}]}}):
        assert post(api, f"/instances/{answer['ID']}/modify", refused).status_code == 400, refused
    # Keep of a path in an anonymization: that value survives, the other items' UIDs are remapped.
    kept = post(api, f"/instances/{answer['ID']}/anonymize", {"Keep": ["ReferencedImageSequence[0].ReferencedSOPInstanceUID"]})
    assert kept.status_code == 200, kept.content
    uids = [i.ReferencedSOPInstanceUID for i in pydicom.dcmread(io.BytesIO(kept.content)).ReferencedImageSequence]
    assert uids[0] == "1.2.3.0" and uids[1] != "1.2.3.1"


# --- Transcode -------------------------------------------------------------------

def test_modifying_a_jpeg2000_instance_to_explicit_little_endian_decodes_its_pixels(api):
    j2k = transcode.transcoded_bytes(io.BytesIO(make_instance(patient_id="TRANSCODE-0")), JPEG2000Lossless)
    source = pydicom.dcmread(io.BytesIO(j2k))
    assert source.file_meta.TransferSyntaxUID == JPEG2000Lossless
    answer = store(api, j2k)
    response = post(api, f"/instances/{answer['ID']}/modify",
                    {"Replace": {"PatientName": "DECODED"}, "Transcode": ExplicitVRLittleEndian})
    assert response.status_code == 200, response.content
    edited = pydicom.dcmread(io.BytesIO(response.content))
    assert edited.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and str(edited.PatientName) == "DECODED"
    assert np.array_equal(edited.pixel_array, source.pixel_array)


def test_a_study_transcoded_to_jpeg2000_lossless_round_trips(api):
    source, _ = study(api, count=2, patient_id="TRANSCODE-1")
    originals = {int(f.InstanceNumber): f.pixel_array for f in files_of(api, "studies", source)}
    response = post(api, f"/studies/{source}/modify", {"Replace": {"StudyDescription": "J2K"}, "Transcode": JPEG2000Lossless})
    assert response.status_code == 200, response.content
    assert response.json()["Transcode"] == JPEG2000Lossless  # Orthanc's answer names the syntax
    results = files_of(api, "studies", response.json()["ID"])
    assert len(results) == 2
    for result in results:
        assert result.file_meta.TransferSyntaxUID == JPEG2000Lossless and result.StudyDescription == "J2K"
        assert np.array_equal(result.pixel_array, originals[int(result.InstanceNumber)])
    assert set(Instance.objects.filter(series__study__public_id=response.json()["ID"])
               .values_list("transfer_syntax_uid", flat=True)) == {JPEG2000Lossless}


def test_anonymize_transcodes_too(api):
    source, _ = study(api, count=1, patient_id="TRANSCODE-2")
    response = post(api, f"/studies/{source}/anonymize", {"Transcode": RLELossless})
    assert response.status_code == 200, response.content
    assert files_of(api, "studies", response.json()["ID"])[0].file_meta.TransferSyntaxUID == RLELossless


def test_unknown_or_unwritable_transcode_is_refused_as_orthanc_does(api):
    source, answers = study(api, count=1, patient_id="TRANSCODE-3")
    one = post(api, f"/instances/{answers[0]['ID']}/modify", {"Transcode": "1.2.3.4"}).json()
    assert (one["OrthancStatus"], one["Details"]) == (3, "Unknown transfer syntax: 1.2.3.4")
    for route in ("modify", "anonymize"):
        many = post(api, f"/studies/{source}/{route}", {"Transcode": "nonsense"}).json()
        assert (many["HttpStatus"], many["OrthancStatus"], many["Details"]) == \
            (400, 15, "Unknown transfer syntax UID: nonsense")
    # A known syntax pacsweb does not write (JPEG baseline): refused before anything is stored.
    before = Instance.objects.count()
    refused = post(api, f"/studies/{source}/modify", {"Transcode": "1.2.840.10008.1.2.4.50"})
    assert refused.status_code == 400 and refused.json()["Details"].startswith("Cannot transcode to transfer syntax")
    assert Instance.objects.count() == before


# --- anonymization -------------------------------------------------------------

def _planted(keyword, n):
    """A PHI value for the attribute that cannot occur by chance elsewhere."""
    vr = dictionary_VR(keyword)
    return {"DA": f"1901{n % 12 + 1:02d}{n % 27 + 1:02d}", "TM": f"23{n % 60:02d}59.{n:04d}", "DT": f"19010203{n % 24:02d}{n % 60:02d}00",
            "AS": f"{n % 999:03d}W", "DS": f"{n}.375", "IS": str(990000 + n), "UI": uid("phi", keyword),
            "US": None, "SQ": None, "FD": None, "SS": None, "UL": None, "FL": None, "SL": None, "OB": None,
            "OW": None, "UN": None, "AT": None, "US or SS": None, "OB or OW": None,
            "CS": f"PHI{n:04d}{keyword.upper()[:9]}", "AE": f"PHI{n:04d}{keyword.upper()[:9]}",
            "SH": f"PHI{n:04d}{keyword[:9]}"}.get(vr, f"PHI{n:04d}{keyword[:12]}")


def phi_series(patient_id, study_uid):
    """Three instances with a planted value in every attribute of Table E.1-1 that takes a
    plain value, a person name and an institution inside a sequence, a private block, and a
    reference from the last instance to the first."""
    planted = {}
    for n, keyword in enumerate(sorted(confidentiality.ACTIONS)):
        value = _planted(keyword, n)
        if value is not None and keyword not in ("PatientID", "StudyInstanceUID"):
            planted[keyword] = value
    series_uid = uid("phi", "series")
    files = []
    for number in range(1, 4):
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        item.ReferencedSOPInstanceUID = uid(series_uid, 1)
        item.PatientName = "INSIDE^SEQUENCE^NAME"
        item.InstitutionName = "Sequence Memorial Hospital"
        fields = dict(planted)
        fields["ReferencedImageSequence"] = Sequence([item])
        data = make_instance(patient_id=patient_id, study_uid=study_uid, series_uid=series_uid,
                             instance_number=number, patient_name="SECRET^PATIENT^NAME", **fields)
        dataset = pydicom.dcmread(io.BytesIO(data))
        block = dataset.private_block(0x0019, "PACSWEB PHI", create=True)
        block.add_new(0x01, "LO", "PRIVATE-PHI-VALUE")
        out = io.BytesIO()
        dataset.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return files


def _values(dataset):
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                yield from _values(item)
        elif element.tag != 0x7FE00010 and element.value not in (None, "", b""):
            values = element.value if element.VM > 1 and not isinstance(element.value, (str, bytes)) else [element.value]
            for value in values:
                yield element.tag, str(value)


def _phi_of(dataset, numbers=True):
    """The identifying values of an original: those of the table's attributes, of person
    names and private attributes, and every UID that is not the standard's. `numbers`: count
    numeric values too (the planted ones are unique; 0.000000 in a real file is not PHI)."""
    found = set()
    for element_tag, value in _values(dataset):
        keyword = pydicom.datadict.keyword_for_tag(element_tag)
        vr = pydicom.datadict.dictionary_VR(element_tag) if keyword else "UN"
        if (keyword in confidentiality.ACTIONS or vr == "PN" or
                (vr == "UI" and value not in UID_dictionary)) and len(value) >= 4:
            if numbers or vr == "UI" or not value.replace(".", "").replace("-", "").isdigit():
                found.add(value)
        elif element_tag.is_private and len(value) >= 6 and any(c.isalpha() for c in value):
            # Private values (a vendor's numbers are not identifying, its words may be).
            found.add(value)
    return found


def test_anonymizing_a_study_leaves_no_original_value(api):
    patient_id, study_uid = "PHI-PATIENT-0042", uid("phi", "study")
    originals = phi_series(patient_id, study_uid)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        dataset = pydicom.dcmread(get_testdata_file(name))
        dataset.PatientID, dataset.StudyInstanceUID = patient_id, study_uid
        out = io.BytesIO()
        dataset.save_as(out)
        originals.append(out.getvalue())
    answers = [store(api, data) for data in originals]
    source = answers[0]["ParentStudy"]
    phi = set().union(*(_phi_of(pydicom.dcmread(io.BytesIO(d)), numbers=n < 3) for n, d in enumerate(originals)))
    phi.add(patient_id)

    response = post(api, f"/studies/{source}/anonymize", {})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["IsAnonymization"] is True and result["InstancesCount"] == 5 and set(result) == ANSWER_KEYS
    files = files_of(api, "studies", result["ID"])
    assert len(files) == 5
    leaks = {(f.SOPInstanceUID, tag, value) for f in files for tag, value in _values(f) if value in phi}
    assert leaks == set()
    # Consistent UIDs: one study, three series as in the source, and the reference of each
    # generated instance follows the first instance to its new UID.
    assert len({f.StudyInstanceUID for f in files}) == 1
    assert len({f.SeriesInstanceUID for f in files}) == 3
    assert len({f.PatientID for f in files}) == 1 and files[0].PatientIdentityRemoved == "YES"
    generated = sorted((f for f in files if "ReferencedImageSequence" in f), key=lambda f: int(f.InstanceNumber))
    assert {f.ReferencedImageSequence[0].ReferencedSOPInstanceUID for f in generated} == {generated[0].SOPInstanceUID}
    assert all(not [e for e in f if e.tag.is_private] for f in files)
    assert api.get(f"/studies/{source}").status_code == 200
    assert Metadata.objects.get(resource_id=result["ID"], name="AnonymizedFrom").value == source


def test_anonymize_keeps_what_is_asked_and_removes_the_source(api):
    source, _ = study(api, count=2, patient_id="ANON-KEEP")
    response = post(api, f"/studies/{source}/anonymize",
                    {"Keep": ["StudyDescription"], "Replace": {"PatientName": "RESEARCH^001"},
                     "KeepPrivateTags": True, "KeepSource": False})
    assert response.status_code == 200, response.content
    files = files_of(api, "studies", response.json()["ID"])
    assert {f.StudyDescription for f in files} == {"CT CHEST"}
    assert {str(f.PatientName) for f in files} == {"RESEARCH^001"}
    assert "InstitutionName" not in files[0] and files[0].AccessionNumber == ""
    assert api.get(f"/studies/{source}").status_code == 404


def test_burned_in_annotation_is_refused_unless_allowed(api):
    source, _ = study(api, count=1, patient_id="BURNED", BurnedInAnnotation="YES")
    refused = post(api, f"/studies/{source}/anonymize", {})
    assert refused.status_code == 400 and "BurnedInAnnotation" in refused.json()["Details"]
    assert Instance.objects.count() == 1
    allowed = post(api, f"/studies/{source}/anonymize", {"AllowBurnedInAnnotation": True})
    assert allowed.status_code == 200
    assert files_of(api, "studies", allowed.json()["ID"])[0].BurnedInAnnotation == "YES"


def test_two_anonymizations_of_one_study_give_two_studies(api):
    source, _ = study(api, count=1, patient_id="TWICE")
    first = post(api, f"/studies/{source}/anonymize", {}).json()
    second = post(api, f"/studies/{source}/anonymize", {}).json()
    assert first["ID"] != second["ID"] and first["PatientID"] != second["PatientID"]


# --- split, merge, bulk ----------------------------------------------------------

def two_series_study(api, patient_id="SPLIT-1"):
    study_uid = uid(patient_id, "study")
    answers = [store(api, make_instance(patient_id=patient_id, study_uid=study_uid, series_uid=uid(patient_id, s),
                                        instance_number=n, sop_uid=uid(patient_id, s, n)))
               for s in ("a", "b") for n in (1, 2)]
    return answers[0]["ParentStudy"], answers


def test_split_moves_a_series_to_a_new_study(api):
    source, answers = two_series_study(api)
    response = post(api, f"/studies/{source}/split", {"Series": [answers[0]["ParentSeries"]],
                                                      "Replace": {"StudyDescription": "PART TWO"}})
    assert response.status_code == 200, response.content
    result = response.json()
    assert set(result) == {"Description", "FailedInstancesCount", "InstancesCount", "TargetStudy", "TargetStudyUID"}
    assert result["InstancesCount"] == 2
    moved = files_of(api, "studies", result["TargetStudy"])
    assert {f.StudyInstanceUID for f in moved} == {result["TargetStudyUID"]}
    assert {f.StudyDescription for f in moved} == {"PART TWO"}
    # KeepSource defaults to false for a split: the series left the source study.
    assert api.get(f"/studies/{source}").json()["Series"] == [answers[2]["ParentSeries"]]
    assert post(api, f"/studies/{source}/split", {}).json()["Details"] == \
        'Both the "Series" and the "Instances" fields are missing'


def test_merge_brings_a_study_into_another(api):
    target, _ = two_series_study(api, "MERGE-TARGET")
    other = store(api, make_instance(patient_id="MERGE-OTHER", patient_name="OTHER^NAME", study_description="OTHER"))
    response = post(api, f"/studies/{target}/merge", {"Resources": [other["ParentStudy"]]})
    assert response.status_code == 200, response.content
    assert response.json() == {"Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": 1,
                               "TargetStudy": target}
    merged = files_of(api, "studies", target)
    assert len(merged) == 5 and {f.PatientID for f in merged} == {"MERGE-TARGET"}
    assert {f.StudyDescription for f in merged} == {"CT CHEST"}
    assert api.get(f"/studies/{other['ParentStudy']}").status_code == 404
    bad = post(api, f"/studies/{target}/merge", {})
    assert bad.status_code == 400 and bad.json()["Details"] == "List of strings expected in field: Resources"


def test_bulk_modify_anonymize_and_delete(api):
    first, _ = study(api, count=2, patient_id="BULK-1")
    second, _ = study(api, count=1, patient_id="BULK-2")
    response = post(api, "/tools/bulk-modify", {"Resources": [first, second], "Level": "Study",
                                                "Replace": {"InstitutionName": "Bulk"}})
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["InstancesCount"] == 3 and result["IsAnonymization"] is False
    types = [r["Type"] for r in result["Resources"]]
    assert types == ["Instance"] * 3 + ["Series"] * 2 + ["Study"] * 2 + ["Patient"] * 2
    anonymized = post(api, "/tools/bulk-anonymize", {"Resources": [first, second]}).json()
    assert anonymized["IsAnonymization"] is True
    # Two patients stay two patients after one anonymization.
    assert len([r for r in anonymized["Resources"] if r["Type"] == "Patient"]) == 2
    deleted = post(api, "/tools/bulk-delete", {"Resources": [first, second, "unknown-id"]})
    assert deleted.status_code == 200
    assert api.get(f"/studies/{first}").status_code == 404 and api.get(f"/studies/{second}").status_code == 404


def test_each_modification_and_anonymization_is_audited(api):
    from archive.models import AuditEvent

    source, answers = study(api, count=1, patient_id="AUDITED")
    modified = post(api, f"/studies/{source}/modify", {"Replace": {"PatientName": "AUDIT^ME"}}).json()
    post(api, f"/instances/{answers[0]['ID']}/anonymize", {})
    rows = {row.action: row for row in AuditEvent.objects.filter(action__in=("modify", "anonymize"))}
    assert rows["modify"].actor == "admin" and rows["modify"].resource == source
    assert rows["modify"].details["source"] == source and rows["modify"].details["result"] == modified["ID"]
    assert rows["modify"].details["request"]["replace"] == {"00100010": "AUDIT^ME"}
    assert rows["anonymize"].level == "Instance" and rows["anonymize"].resource == answers[0]["ID"]
    listed = api.get("/audit?action=modify").json()
    assert [e["Resource"] if "Resource" in e else e.get("resource") for e in listed][:1] == [source]

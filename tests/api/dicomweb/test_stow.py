"""STOW-RS: POST /dicom-web/studies[/{study}] with multipart/related application/dicom bodies."""

import pytest

from tests.dicomgen import make_instance, uid
from tests.api.dicomweb.support import BOUNDARY, dataset, multipart, value


MULTIPART = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
A900, C000, PROCESSING_FAILURE = 0xA900, 0xC000, 0x0110


def post(api, body, path="/dicom-web/studies", content_type=MULTIPART):
    return api.generic("POST", path, body, content_type=content_type)


def stored_files(storage_dir):
    return [p for p in storage_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"]


def stored_bytes(api):
    return [b"".join(api.get(f"/instances/{i}/file").streaming_content) for i in api.get("/instances").json()]


def count_instances(api):
    return api.get("/statistics").json()["CountInstances"]


def test_all_parts_stored_is_200_with_references(api):
    files = [make_instance(instance_number=n) for n in (1, 2)]
    response = post(api, multipart(files))
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom+json"
    answer = response.json()
    references = value(answer, "ReferencedSOPSequence")
    assert [value(r, "ReferencedSOPInstanceUID") for r in references] == [[dataset(f).SOPInstanceUID] for f in files]
    assert value(references[0], "ReferencedSOPClassUID") == ["1.2.840.10008.5.1.4.1.1.2"]
    ds = dataset(files[0])
    assert value(references[0], "RetrieveURL") == [
        f"http://testserver/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"]
    assert value(answer, "FailedSOPSequence") is None
    # What was stored is what was sent, byte for byte.
    assert sorted(stored_bytes(api)) == sorted(files)


def test_an_instance_already_stored_counts_as_stored(api):
    data = make_instance()
    assert post(api, multipart([data])).status_code == 200
    assert post(api, multipart([data])).status_code == 200
    assert count_instances(api) == 1


def test_some_parts_refused_is_202_and_the_refused_part_leaves_nothing(api, storage_dir):
    good = make_instance()
    response = post(api, multipart([good, b"this is not DICOM at all"]))
    assert response.status_code == 202
    answer = response.json()
    assert len(value(answer, "ReferencedSOPSequence")) == 1
    [failed] = value(answer, "FailedSOPSequence")
    assert value(failed, "FailureReason") == [C000]
    assert "DICM" in response["Warning"]
    assert count_instances(api) == 1 and len(stored_files(storage_dir)) == 1


def test_an_instance_of_another_study_is_refused_by_study_path_with_a900_and_409(api, storage_dir):
    data = make_instance(study_uid=uid("study one"))
    response = post(api, multipart([data]), path=f"/dicom-web/studies/{uid('study two')}")
    assert response.status_code == 409
    answer = response.json()
    [failed] = value(answer, "FailedSOPSequence")
    assert value(failed, "FailureReason") == [A900]
    assert value(failed, "ReferencedSOPInstanceUID") == [dataset(data).SOPInstanceUID]
    assert value(answer, "RetrieveURL") == [f"http://testserver/dicom-web/studies/{uid('study two')}"]
    assert count_instances(api) == 0 and stored_files(storage_dir) == []


def test_the_study_path_accepts_its_own_instances(api):
    data = make_instance(study_uid=uid("study one"))
    assert post(api, multipart([data]), path=f"/dicom-web/studies/{uid('study one')}").status_code == 200


def test_a_sop_instance_uid_stored_under_another_study_fails_with_processing_failure(api):
    sop = uid("shared sop")
    assert post(api, multipart([make_instance(sop_uid=sop, study_uid=uid("a"))])).status_code == 200
    response = post(api, multipart([make_instance(sop_uid=sop, study_uid=uid("b"))]))
    assert response.status_code == 409
    [failed] = value(response.json(), "FailedSOPSequence")
    assert value(failed, "FailureReason") == [PROCESSING_FAILURE]


@pytest.mark.parametrize("content_type", [
    "application/dicom",
    f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
    f"multipart/form-data; boundary={BOUNDARY}",
])
def test_other_media_types_are_415(api, content_type, storage_dir):
    response = post(api, multipart([make_instance()]), content_type=content_type)
    assert response.status_code == 415
    assert stored_files(storage_dir) == []


def test_without_type_parameter_every_part_must_say_it_is_dicom(api, storage_dir):
    untyped = f"multipart/related; boundary={BOUNDARY}"
    assert post(api, multipart([make_instance(instance_number=1)]), content_type=untyped).status_code == 200
    mixed = multipart([make_instance(instance_number=2)], part_type="")
    response = post(api, mixed, content_type=untyped)
    assert response.status_code == 415
    assert count_instances(api) == 1


def test_parts_without_content_type_are_dicom_when_the_request_says_so(api):
    response = post(api, multipart([make_instance()], part_type=""))
    assert response.status_code == 200


def test_a_text_part_makes_the_whole_request_415_and_stores_nothing(api, storage_dir):
    body = multipart([make_instance()]).replace(f"--{BOUNDARY}--\r\n".encode(), b"") + multipart(
        [b"hello"], part_type="text/plain")
    response = post(api, body)
    assert response.status_code == 415
    assert stored_files(storage_dir) == []


@pytest.mark.parametrize("body, content_type", [
    (multipart([make_instance()], close=False), MULTIPART),
    (multipart([make_instance()])[:-200], MULTIPART),
    (make_instance(), MULTIPART),
    (multipart([make_instance()]), 'multipart/related; type="application/dicom"'),
    (f"--{BOUNDARY}--\r\n".encode(), MULTIPART),
])
def test_a_broken_multipart_body_is_400_and_stores_nothing(api, body, content_type, storage_dir):
    response = post(api, body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["Details"]
    assert stored_files(storage_dir) == []


def test_preamble_padding_and_epilogue_are_tolerated(api):
    data = make_instance()
    body = (b"a preamble to ignore\r\n" + f"--{BOUNDARY}   \r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data + f"\r\n--{BOUNDARY}--\r\nan epilogue".encode())
    assert post(api, body).status_code == 200


def test_a_part_containing_crlf_dashes_is_stored_whole(api):
    # Pixel data that looks like the start of a delimiter must not cut the part.
    data = make_instance(ImageComments="x\r\n--not-the-boundary")
    response = post(api, multipart([data]))
    assert response.status_code == 200
    assert stored_bytes(api) == [data]


def test_other_methods_on_studies_are_405(api):
    assert api.put("/dicom-web/studies").status_code == 405


def test_a_body_over_the_upload_limit_is_413(api, settings, storage_dir):
    settings.MAX_UPLOAD_BYTES = 10_000
    response = post(api, multipart([make_instance(rows=128, columns=128)]))
    assert response.status_code == 413
    assert stored_files(storage_dir) == []


def test_many_failed_parts_keep_the_warning_header_short_and_every_failure_in_the_body(api):
    good = [make_instance(instance_number=n) for n in range(5)]
    bad = [b"not DICOM, part %d " % n * 40 for n in range(200)]
    response = post(api, multipart(good + bad))
    assert response.status_code == 202
    answer = response.json()
    assert len(value(answer, "ReferencedSOPSequence")) == 5
    failed = value(answer, "FailedSOPSequence")
    assert len(failed) == 200 and all(value(f, "FailureReason") == [C000] for f in failed)
    # 200 reasons in the header made HAProxy answer 502 while the good parts were stored.
    assert len(response["Warning"]) < 2000
    assert "197 more parts failed" in response["Warning"]


def test_the_answer_is_the_dicom_json_pydicom_writes_for_it(rf):
    """The Store Instances Response is written as JSON directly: the same attributes,
    values and order as pydicom's conversion of the Dataset it describes."""
    import json

    from pydicom.dataset import Dataset

    from api.dicomweb import stow

    outcomes = [
        stow.Outcome("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", retrieve_url="http://h/dicom-web/studies/1/series/2/instances/1.2.3.4"),
        stow.Outcome("", "", failure=stow.CANNOT_UNDERSTAND, reason="not DICOM"),
        stow.Outcome("1.2.840.10008.5.1.4.1.1.4", "1.2.3.5", failure=stow.PROCESSING_FAILURE, reason="known elsewhere"),
        stow.Outcome("1.2.840.10008.5.1.4.1.1.4", "1.2.3.6", failure=stow.DOES_NOT_MATCH, reason="another study"),
        stow.Outcome("1.2.840.10008.5.1.4.1.1.7", "1.2.3.7", retrieve_url="http://h/dicom-web/studies/1/series/3/instances/1.2.3.7"),
    ]

    def item(outcome):
        answer = Dataset()
        answer.ReferencedSOPClassUID = outcome.sop_class_uid
        answer.ReferencedSOPInstanceUID = outcome.sop_instance_uid
        if outcome.failure is None:
            answer.RetrieveURL = outcome.retrieve_url
        else:
            answer.FailureReason = outcome.failure
        return answer

    for chosen in ([outcomes[0]], outcomes[1:2], outcomes[1:4], outcomes):
        for study in ("", "1.2.3"):
            request = rf.post("/dicom-web/studies")
            expected = Dataset()
            if study:
                expected.RetrieveURL = f"http://testserver/dicom-web/studies/{study}"
            if any(o.failure is None for o in chosen):
                expected.ReferencedSOPSequence = [item(o) for o in chosen if o.failure is None]
            if any(o.failure is not None for o in chosen):
                expected.FailedSOPSequence = [item(o) for o in chosen if o.failure is not None]
            answer = json.loads(stow._answer(request, chosen, study).content)
            assert answer == expected.to_json_dict()
            assert json.dumps(answer) == json.dumps(expected.to_json_dict())  # the order too

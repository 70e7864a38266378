"""C-FIND: answers at every level and for every matching type, compared with what was stored."""

import re
from dataclasses import dataclass

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
)
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from tests.dicomgen import make_instance, uid
from tests.dicom.conftest import association, dcmtk, post_instance, post_zip

PATIENTS = {  # PatientID → (PatientName, PatientBirthDate)
    "FIND-001": ("SMITH^JOHN", "19700101"),
    "FIND-002": ("SMYTHE^JANE", "19851122"),
    "FIND-003": ("Doe^Alice", "19921005"),
}


@dataclass(frozen=True)
class Study:
    key: str
    patient_id: str
    date: str
    accession: str
    description: str
    series: tuple  # (modality, number of instances), ...

    @property
    def uid(self):
        return uid("find", self.key)

    def series_uid(self, modality):
        return uid("find", self.key, modality)

    def sop_uid(self, modality, number):
        return uid("find", self.key, modality, number)

    @property
    def instances(self):
        return sum(count for _, count in self.series)

    @property
    def modalities(self):
        return sorted(modality for modality, _ in self.series)


STUDIES = [
    Study("A", "FIND-001", "20200315", "ACC-A1", "CHEST CT", (("CT", 2), ("MR", 1))),
    Study("B", "FIND-001", "20180620", "ACC-B2", "KNEE MR", (("MR", 2),)),
    Study("C", "FIND-002", "20210110", "ACC-C3", "ABDOMEN CT", (("CT", 3),)),
    Study("D", "FIND-003", "20201231", "ACC-D4", "NECK US", (("US", 1), ("DX", 1))),
]
A, B, C, D = STUDIES


def seed_files():
    for study in STUDIES:
        name, birth_date = PATIENTS[study.patient_id]
        for series_number, (modality, count) in enumerate(study.series, start=1):
            for n in range(1, count + 1):
                yield make_instance(
                    patient_id=study.patient_id, patient_name=name, PatientBirthDate=birth_date,
                    study_uid=study.uid, series_uid=study.series_uid(modality), sop_uid=study.sop_uid(modality, n),
                    instance_number=n, modality=modality, study_date=study.date, accession_number=study.accession,
                    study_description=study.description, SeriesNumber=series_number, rows=8, columns=8,
                )


MODALITIES = {
    "findscu": {"AET": "FINDSCU", "Host": "127.0.0.1", "Port": 11113, "AllowFind": True},
    "pyfind": ["PYFIND", "127.0.0.1", 11114],
}


@pytest.fixture(scope="module")
def server(module_node):
    server = module_node.server()
    for data in seed_files():
        post_instance(server, data)
    assert server.sql("SELECT count(*) FROM instance") == [(10,)]
    return server


@pytest.fixture(scope="module")
def listener(module_node, server):
    return module_node.listener(server, modalities=MODALITIES)


# --- the two clients ---------------------------------------------------------------

MODELS = {"patient": PatientRootQueryRetrieveInformationModelFind, "study": StudyRootQueryRetrieveInformationModelFind}


def identifier(level, keys):
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def pynetdicom_find(port, level, keys, model="study", calling="PYFIND"):
    """(answers, statuses of every response) of one C-FIND."""
    answers, statuses = [], []
    with association(port, [MODELS[model]], calling=calling) as assoc:
        for status, answer in assoc.send_c_find(identifier(level, keys), MODELS[model]):
            assert status is not None, "no C-FIND response within the timeout"
            statuses.append(status.Status)
            if status.Status in (0xFF00, 0xFF01):
                answers.append(answer)
    return answers, statuses


def findscu(port, level, keys, out_dir, model="study"):
    """(answers, final status text) of one findscu run; answers from its extracted rsp files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["-v", "-aet", "FINDSCU", "-aec", "PACSWEB", "-P" if model == "patient" else "-S",
            "-k", f"QueryRetrieveLevel={level}"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    result = dcmtk("findscu", *args, "-X", "-od", out_dir, "127.0.0.1", port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    assert final, output
    answers = [pydicom.dcmread(path) for path in sorted(out_dir.glob("rsp*.dcm"))]
    return answers, final.group(1)


@pytest.fixture(params=["findscu", "pynetdicom"])
def find(request, listener, tmp_path):
    """find(level, keys, model) → answers, through findscu or pynetdicom; the query must succeed."""
    runs = []

    def run(level, keys, model="study"):
        if request.param == "findscu":
            answers, final = findscu(listener.port, level, keys, tmp_path / f"run{len(runs)}", model)
            assert final == "Success", final
        else:
            answers, statuses = pynetdicom_find(listener.port, level, keys, model)
            assert statuses[-1] == 0x0000, [hex(s) for s in statuses]
            assert set(statuses[:-1]) <= {0xFF00, 0xFF01}
        runs.append(answers)
        return answers

    return run


def text(answer, keyword):
    """An answer's value as DICOM text ('' when empty or absent; values joined by '\\')."""
    if keyword not in answer or answer[keyword].value is None:
        return ""
    value = answer[keyword].value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


# --- STUDY level: every matching type ----------------------------------------------

STUDY_KEYS = ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "AccessionNumber", "StudyDescription",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]


def expected_study(study):
    return {
        "PatientName": PATIENTS[study.patient_id][0], "PatientID": study.patient_id, "StudyInstanceUID": study.uid,
        "StudyDate": study.date, "AccessionNumber": study.accession, "StudyDescription": study.description,
        "ModalitiesInStudy": "\\".join(study.modalities), "NumberOfStudyRelatedSeries": str(len(study.series)),
        "NumberOfStudyRelatedInstances": str(study.instances),
    }


STUDY_CASES = {  # matching keys → the studies that match
    "single value": ({"PatientName": "SMITH^JOHN"}, [A, B]),
    "single value date": ({"StudyDate": "20180620"}, [B]),
    "universal": ({"PatientName": ""}, [A, B, C, D]),
    "wildcard * at the end": ({"PatientName": "SM*"}, [A, B, C]),
    "wildcard * at the start": ({"PatientName": "*E"}, [C, D]),
    "wildcard ?": ({"AccessionNumber": "ACC-?3"}, [C]),
    "wildcards * and ?": ({"StudyDescription": "*C?"}, [A, C]),
    "date range closed": ({"StudyDate": "20200101-20201231"}, [A, D]),
    "date range open start": ({"StudyDate": "-20191231"}, [B]),
    "date range open end": ({"StudyDate": "20210101-"}, [C]),
    "UID list": ({"StudyInstanceUID": f"{A.uid}\\{C.uid}"}, [A, C]),
    "patient name in lower case": ({"PatientName": "doe^alice"}, [D]),
    "patient name wildcard in lower case": ({"PatientName": "smy*"}, [C]),
    "ModalitiesInStudy one value": ({"ModalitiesInStudy": "MR"}, [A, B]),
    "ModalitiesInStudy list": ({"ModalitiesInStudy": "US\\CT"}, [A, C, D]),
    "two keys": ({"PatientID": "FIND-001", "StudyDate": "20200101-"}, [A]),
    "no match": ({"PatientID": "NOBODY"}, []),
}


@pytest.mark.parametrize("case", STUDY_CASES, ids=list(STUDY_CASES))
def test_study_level_matching(find, case):
    matching, studies = STUDY_CASES[case]
    keys = {keyword: "" for keyword in STUDY_KEYS} | matching
    answers = find("STUDY", keys)
    got = {text(a, "StudyInstanceUID"): {k: text(a, k) for k in STUDY_KEYS} for a in answers}
    assert len(got) == len(answers), "a study was answered twice"
    assert got == {s.uid: expected_study(s) for s in studies}
    assert all(text(a, "QueryRetrieveLevel") == "STUDY" for a in answers)


# --- PATIENT, SERIES, IMAGE levels -------------------------------------------------


def test_patient_level_in_patient_root_answers_patients_with_their_counts(find):
    keys = {"PatientID": "FIND-*", "PatientName": "", "PatientBirthDate": "", "NumberOfPatientRelatedStudies": "",
            "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": ""}
    answers = find("PATIENT", keys, model="patient")
    got = {text(a, "PatientID"): tuple(text(a, k) for k in list(keys)[1:]) for a in answers}
    expected = {}
    for patient_id, (name, birth_date) in PATIENTS.items():
        studies = [s for s in STUDIES if s.patient_id == patient_id]
        expected[patient_id] = (name, birth_date, str(len(studies)), str(sum(len(s.series) for s in studies)),
                                str(sum(s.instances for s in studies)))
    assert got == expected


def test_patient_level_matches_names_case_insensitively(find):
    answers = find("PATIENT", {"PatientID": "", "PatientName": "sm*"}, model="patient")
    assert sorted(text(a, "PatientID") for a in answers) == ["FIND-001", "FIND-002"]


def test_series_level_answers_the_series_of_a_study(find):
    keys = {"StudyInstanceUID": A.uid, "SeriesInstanceUID": "", "Modality": "", "SeriesNumber": "",
            "NumberOfSeriesRelatedInstances": ""}
    answers = find("SERIES", keys)
    got = {text(a, "SeriesInstanceUID"): (text(a, "StudyInstanceUID"), text(a, "Modality"), text(a, "SeriesNumber"),
                                          text(a, "NumberOfSeriesRelatedInstances")) for a in answers}
    assert got == {A.series_uid("CT"): (A.uid, "CT", "1", "2"), A.series_uid("MR"): (A.uid, "MR", "2", "1")}


def test_series_level_matches_modality_within_a_uid_list_of_studies(find):
    keys = {"StudyInstanceUID": f"{A.uid}\\{B.uid}\\{C.uid}", "SeriesInstanceUID": "", "Modality": "MR"}
    answers = find("SERIES", keys)
    assert sorted(text(a, "SeriesInstanceUID") for a in answers) == sorted([A.series_uid("MR"), B.series_uid("MR")])
    assert {text(a, "Modality") for a in answers} == {"MR"}


def test_image_level_answers_the_instances_of_a_series(find):
    keys = {"StudyInstanceUID": C.uid, "SeriesInstanceUID": C.series_uid("CT"), "SOPInstanceUID": "",
            "SOPClassUID": "", "InstanceNumber": ""}
    answers = find("IMAGE", keys)
    got = {text(a, "SOPInstanceUID"): (text(a, "SOPClassUID"), text(a, "InstanceNumber"), text(a, "SeriesInstanceUID"))
           for a in answers}
    assert got == {C.sop_uid("CT", n): (pydicom.uid.CTImageStorage, str(n), C.series_uid("CT")) for n in (1, 2, 3)}


def test_image_level_matches_a_uid_list_of_instances(find):
    wanted = [A.sop_uid("MR", 1), D.sop_uid("US", 1)]
    keys = {"StudyInstanceUID": "", "SeriesInstanceUID": "", "SOPInstanceUID": "\\".join(wanted), "InstanceNumber": ""}
    answers = find("IMAGE", keys)
    assert sorted(text(a, "SOPInstanceUID") for a in answers) == sorted(wanted)
    assert sorted(text(a, "StudyInstanceUID") for a in answers) == sorted([A.uid, D.uid])


def test_patient_level_in_study_root_is_refused(listener):
    answers, statuses = pynetdicom_find(listener.port, "PATIENT", {"PatientID": ""}, model="study")
    assert answers == []
    assert statuses == [0xA900]


# The listener writes answers itself in the two syntaxes nearly every SCU proposes,
# and lets pynetdicom send them in the others: the same answers either way.
SYNTAXES = {"implicit": ImplicitVRLittleEndian, "explicit": ExplicitVRLittleEndian,
            "deflated": DeflatedExplicitVRLittleEndian, "big endian": ExplicitVRBigEndian}


def test_every_transfer_syntax_gets_the_same_answers(listener):
    model = StudyRootQueryRetrieveInformationModelFind
    query = identifier("STUDY", {keyword: "" for keyword in STUDY_KEYS} | {"ModalitiesInStudy": ""})
    got = {}
    for name, syntax in SYNTAXES.items():
        with association(listener.port, [(model, [syntax])], calling="PYFIND") as assoc:
            responses = list(assoc.send_c_find(query, model))
        assert [s.Status for s, _ in responses] == [0xFF00] * len(STUDIES) + [0x0000], name
        got[name] = sorted(tuple((k, text(a, k)) for k in [*STUDY_KEYS, "ModalitiesInStudy"])
                           for _, a in responses[:-1])
    assert got["implicit"] == got["explicit"] == got["deflated"] == got["big endian"]
    assert {dict(a)["StudyInstanceUID"] for a in got["implicit"]} == {s.uid for s in STUDIES}


def test_a_peer_with_a_small_maximum_pdu_gets_the_same_answers_in_fragments(listener):
    model = StudyRootQueryRetrieveInformationModelFind
    query = identifier("STUDY", {keyword: "" for keyword in STUDY_KEYS} | {"ModalitiesInStudy": ""})
    got = []
    for maximum in (0, 64):  # 64: each answer's command set and identifier in several PDUs
        ae = AE(ae_title="PYFIND")
        ae.add_requested_context(model)
        ae.maximum_pdu_size = maximum
        with association(listener.port, [model], calling="PYFIND", ae=ae) as assoc:
            responses = list(assoc.send_c_find(query, model))
        assert [s.Status for s, _ in responses] == [0xFF00] * len(STUDIES) + [0x0000], maximum
        got.append(sorted(tuple((k, text(a, k)) for k in [*STUDY_KEYS, "ModalitiesInStudy"]) for _, a in responses[:-1]))
    assert got[0] == got[1]


# --- limits and cancellation -------------------------------------------------------


@pytest.fixture(scope="module")
def limited_listener(module_node, server):
    return module_node.listener(server, modalities=MODALITIES, PACS_DICOM_MAX_FIND_ANSWERS=3)


def test_more_matches_than_max_find_answers_give_that_many_answers_then_a_failure(limited_listener):
    answers, statuses = pynetdicom_find(limited_listener.port, "STUDY", {"StudyInstanceUID": "", "PatientName": ""})
    assert statuses == [0xFF00] * 3 + [0xA700], [hex(s) for s in statuses]
    uids = {text(a, "StudyInstanceUID") for a in answers}
    assert len(uids) == 3 and uids <= {s.uid for s in STUDIES}


def test_as_many_matches_as_max_find_answers_succeed(limited_listener):
    answers, statuses = pynetdicom_find(limited_listener.port, "STUDY", {"StudyInstanceUID": "", "PatientName": "SM*"})
    assert statuses == [0xFF00] * 3 + [0x0000], [hex(s) for s in statuses]
    assert {text(a, "StudyInstanceUID") for a in answers} == {A.uid, B.uid, C.uid}


# Instances of one series. The listener answers about one a millisecond and queues
# the next answer only once the previous one left, so a C-CANCEL is read within a
# few answers (when it queued them all at once, the cancel waited for the last).
CROWD = 120
CROWD_STUDY = uid("find", "crowd")


@pytest.fixture(scope="module")
def crowd_listener(module_node):
    """A listener of a second node whose one study has CROWD instances."""
    server = module_node.server("crowd", workers=1)
    post_zip(server, [
        make_instance(patient_id="CROWD", study_uid=CROWD_STUDY, sop_uid=uid("find", "crowd", n), instance_number=n,
                      rows=4, columns=4)
        for n in range(1, CROWD + 1)
    ])
    return module_node.listener(server, modalities=MODALITIES)


def crowd_query():
    return identifier("IMAGE", {"StudyInstanceUID": CROWD_STUDY, "SOPInstanceUID": "", "InstanceNumber": ""})


def test_c_cancel_during_a_find_ends_it_with_cancel_status_before_all_matches(crowd_listener):
    model = StudyRootQueryRetrieveInformationModelFind
    statuses = []
    with association(crowd_listener.port, [model], calling="PYFIND") as assoc:
        for status, _ in assoc.send_c_find(crowd_query(), model, msg_id=7):
            assert status is not None, "no C-FIND response within the timeout"
            statuses.append(status.Status)
            if len(statuses) == 1:
                assoc.send_c_cancel(7, query_model=model)
        # The association outlives the cancelled query: the same query then runs to its end.
        after = [status.Status for status, _ in assoc.send_c_find(crowd_query(), model, msg_id=8)]
    assert statuses[-1] == 0xFE00, [hex(s) for s in statuses[-3:]]
    assert set(statuses[:-1]) == {0xFF00}
    assert 1 <= len(statuses) - 1 < CROWD
    assert after == [0xFF00] * CROWD + [0x0000]


def test_findscu_cancel_after_one_answer_gets_cancel_status(crowd_listener, tmp_path):
    result = dcmtk("findscu", "-v", "-aet", "FINDSCU", "-S", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE",
                   "-k", f"StudyInstanceUID={CROWD_STUDY}", "-k", "SOPInstanceUID=", "-X", "-od", tmp_path,
                   "127.0.0.1", crowd_listener.port)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"Received Final Find Response \(Cancel", output), output
    assert 1 <= len(list(tmp_path.glob("rsp*.dcm"))) < CROWD


# A C-CANCEL ends the query within a few answers of the SCU's decision: the
# listener writes its first answers one at a time (dicom/answers.py PACED_ANSWERS,
# one per PACE), and stops before the next one once the cancel is in its socket.
FEW = 8


def test_c_cancel_after_the_first_answer_ends_the_query_within_a_few_answers(crowd_listener):
    model = StudyRootQueryRetrieveInformationModelFind
    counts = []
    with association(crowd_listener.port, [model], calling="PYFIND") as assoc:
        for msg_id in (21, 22, 23):
            statuses = []
            for status, _ in assoc.send_c_find(crowd_query(), model, msg_id=msg_id):
                assert status is not None, "no C-FIND response within the timeout"
                statuses.append(status.Status)
                if len(statuses) == 1:
                    assoc.send_c_cancel(msg_id, query_model=model)
            assert statuses[-1] == 0xFE00 and set(statuses[:-1]) == {0xFF00}, [hex(s) for s in statuses[-3:]]
            counts.append(len(statuses) - 1)
    assert min(counts) <= FEW, counts


def test_findscu_cancel_after_one_answer_gets_at_most_a_few(crowd_listener, tmp_path):
    counts = []
    for run in range(3):
        out = tmp_path / str(run)
        out.mkdir()
        result = dcmtk("findscu", "-v", "-aet", "FINDSCU", "-S", "--cancel", "1", "-k", "QueryRetrieveLevel=IMAGE",
                       "-k", f"StudyInstanceUID={CROWD_STUDY}", "-k", "SOPInstanceUID=", "-X", "-od", out,
                       "127.0.0.1", crowd_listener.port)
        output = result.stdout + result.stderr
        assert re.search(r"Received Final Find Response \(Cancel", output), output
        counts.append(len(list(out.glob("rsp*.dcm"))))
    assert min(counts) <= FEW, counts

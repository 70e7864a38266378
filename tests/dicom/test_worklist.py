"""Modality Worklist C-FIND (PS3.4 K): what a modality asks, what it gets back.

Items are scheduled through REST (/worklists); modalities query with pynetdicom and
with DCMTK's findscu -W."""

import json

import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests import servers
from tests.dicom.conftest import association
from tests.worklists import findscu_worklist, query_dataset

MODALITIES = {"ct": {"AET": "CT_MODALITY", "Host": "127.0.0.1", "Port": 104, "AllowFind": True},
              "noquery": {"AET": "NO_QUERY", "Host": "127.0.0.1", "Port": 105, "AllowFind": False}}
ITEMS = [
    # patient id, name, accession, station, modality, date, time
    ("WL-1", "GARCÍA^ANA", "WLACC1", "CT_ROOM", "CT", "20250310", "083000"),
    ("WL-2", "GARCIA^LUIS", "WLACC2", "CT_ROOM", "CT", "20250310", "160000"),
    ("WL-3", "BROWN^ALEX", "WLACC3", "MR_ROOM", "MR", "20250311", "100000"),
]


def item_json(patient_id, name, accession, station, modality, date, time):
    return {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00080050": {"vr": "SH", "Value": [accession]},
        "00400100": {"vr": "SQ", "Value": [{
            "00400001": {"vr": "AE", "Value": [station]},
            "00080060": {"vr": "CS", "Value": [modality]},
            "00400002": {"vr": "DA", "Value": [date]},
            "00400003": {"vr": "TM", "Value": [time]},
            "00400009": {"vr": "SH", "Value": [f"SPS-{accession}"]},
        }]},
    }


@pytest.fixture(scope="module")
def listener(module_node):
    server = module_node.server()
    for values in ITEMS:
        status, answer = servers.request_json(server.url + "/worklists", method="POST",
                                              body=json.dumps(item_json(*values)).encode())
        assert status == 200, answer
    cancelled = item_json("WL-4", "GONE^GARY", "WLACC4", "CT_ROOM", "CT", "20250310", "120000")
    status, answer = servers.request_json(server.url + "/worklists", method="POST", body=json.dumps(cancelled).encode())
    assert servers.request_json(server.url + answer["Path"], method="DELETE")[0] == 200
    return module_node.listener(server, modalities=MODALITIES)


def worklist_find(port, identifier, calling="CT_MODALITY"):
    """(answers, statuses) of a Modality Worklist C-FIND from pynetdicom."""
    answers, statuses = [], []
    with association(port, [ModalityWorklistInformationFind], calling=calling) as assoc:
        for status, answer in assoc.send_c_find(identifier, ModalityWorklistInformationFind):
            statuses.append(status.Status)
            if answer is not None and status.Status in (0xFF00, 0xFF01):
                answers.append(answer)
    return answers, statuses


def step_query(**step):
    identifier = Dataset()
    identifier.PatientID = ""
    item = Dataset()
    for keyword, value in step.items():
        setattr(item, keyword, value)
    identifier.ScheduledProcedureStepSequence = [item]
    return identifier


@pytest.mark.parametrize("step, top, expected", [
    ({"ScheduledStationAETitle": "CT_ROOM"}, {}, ["WL-1", "WL-2"]),
    ({"Modality": "MR"}, {}, ["WL-3"]),
    ({"ScheduledProcedureStepStartDate": "20250310", "ScheduledProcedureStepStartTime": "-120000"}, {}, ["WL-1"]),
    ({"ScheduledProcedureStepStartDate": "20250311-20250331"}, {}, ["WL-3"]),
    ({}, {"PatientName": "garcia*"}, ["WL-1", "WL-2"]),
    ({}, {"AccessionNumber": "WLACC2"}, ["WL-2"]),
    ({}, {"PatientID": "WL-3"}, ["WL-3"]),
])
def test_matching_keys_at_the_top_and_in_the_step_item(listener, step, top, expected):
    identifier = step_query(**step)
    for keyword, value in top.items():
        setattr(identifier, keyword, value)
    answers, statuses = worklist_find(listener.port, identifier)
    assert statuses[-1] == 0x0000
    assert sorted(answer.PatientID for answer in answers) == expected


def test_an_answer_holds_the_keys_asked_and_no_others(listener):
    identifier = step_query(ScheduledStationAETitle="MR_ROOM", Modality="", ScheduledProcedureStepID="")
    identifier.PatientName = ""
    identifier.StudyInstanceUID = ""
    identifier.ReferringPhysicianName = ""  # known to the item, empty: zero length
    [answer], _ = worklist_find(listener.port, identifier)
    asked = {"SpecificCharacterSet", "PatientID", "PatientName", "StudyInstanceUID", "ReferringPhysicianName",
             "ScheduledProcedureStepSequence"}
    assert {element.keyword for element in answer} == asked
    assert (str(answer.PatientName), answer.ReferringPhysicianName) == ("BROWN^ALEX", "")
    [step] = answer.ScheduledProcedureStepSequence
    assert {element.keyword for element in step} == {"ScheduledStationAETitle", "Modality", "ScheduledProcedureStepID"}
    assert (step.Modality, step.ScheduledProcedureStepID) == ("MR", "SPS-WLACC3")


def test_a_step_sequence_asked_empty_is_answered_whole(listener):
    identifier = Dataset()
    identifier.AccessionNumber = "WLACC1"
    identifier.ScheduledProcedureStepSequence = []
    [answer], _ = worklist_find(listener.port, identifier)
    [step] = answer.ScheduledProcedureStepSequence
    assert (step.ScheduledStationAETitle, step.ScheduledProcedureStepStartTime, step.ScheduledProcedureStepStatus) \
        == ("CT_ROOM", "083000", "SCHEDULED")


def test_a_modality_not_allowed_to_find_is_refused(listener):
    _, statuses = worklist_find(listener.port, step_query(ScheduledStationAETitle="CT_ROOM"), calling="NO_QUERY")
    assert statuses == [0x0124]


def test_findscu_gets_the_stations_worklist_in_utf_8(listener, tmp_path):
    identifier = query_dataset(step={"ScheduledStationAETitle": "CT_ROOM",
                                     "ScheduledProcedureStepStartDate": "20250310"})
    answers, final = findscu_worklist(listener.port, identifier, tmp_path, calling="CT_MODALITY")
    assert final == "Success"
    assert sorted(str(a.PatientName) for a in answers) == ["GARCIA^LUIS", "GARCÍA^ANA"]
    assert {a.SpecificCharacterSet for a in answers} == {"ISO_IR 192"}

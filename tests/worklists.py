"""Modality Worklist queries as a modality makes them: DCMTK's `findscu -W` with a
query file, the answers read back from the files it extracts."""

import re

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.dicom.conftest import dcmtk

WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
# The return keys of IHE Scheduled Workflow (RAD TF-2 4.5.4.1.2.2), asked empty.
RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "ReferringPhysicianName", "RequestedProcedureID", "RequestedProcedureDescription",
               "StudyInstanceUID")
STEP_KEYS = ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
             "Modality", "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
             "ScheduledProcedureStepID", "ScheduledStationName")


def query_dataset(top=None, step=None):
    """A worklist identifier: every return key empty, then the matching keys given."""
    identifier = Dataset()
    for keyword in RETURN_KEYS:
        setattr(identifier, keyword, "")
    for keyword, value in (top or {}).items():
        setattr(identifier, keyword, value)
    item = Dataset()
    for keyword in STEP_KEYS:
        setattr(item, keyword, "")
    for keyword, value in (step or {}).items():
        setattr(item, keyword, value)
    identifier.ScheduledProcedureStepSequence = [item]
    return identifier


def write_query(path, identifier):
    """The identifier as a DICOM file findscu reads."""
    identifier.file_meta = FileMetaDataset()
    identifier.file_meta.MediaStorageSOPClassUID = WORKLIST_FIND
    identifier.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    identifier.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    identifier.save_as(path, enforce_file_format=True)
    return path


def findscu_worklist(port, identifier, out_dir, calling="FINDSCU", called="PACSWEB"):
    """(answers, final status text) of `findscu -W` with the identifier as its query file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    query = write_query(out_dir / "query.dcm", identifier)
    result = dcmtk("findscu", "-v", "-W", "-aet", calling, "-aec", called, "-X", "-od", out_dir,
                   "127.0.0.1", port, query)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    assert final, output
    answers = [pydicom.dcmread(path) for path in sorted(out_dir.glob("rsp*.dcm"))]
    return answers, final.group(1)

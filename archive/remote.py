"""Studies held by another PACS, as the console's Query/Retrieve page shows them: a
study-level C-FIND (archive.scu) whose answers say which studies are already here."""

from archive import query, scu
from archive.models import Level, Study

# What a study-level answer is asked for (PS3.4 C.6.2.1.2: required and optional keys).
STUDY_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
              "StudyDescription", "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances")


def find_studies(peer, criteria):
    """The peer's studies matching `criteria` (keyword → DICOM matching string; a
    PatientName that is a query.Typed becomes the DICOM patterns that find it, one
    C-FIND each), as dicts of STUDY_KEYS with `here`: the public id of our copy, or "".
    Raises scu.DicomNetworkError."""
    criteria = {k: v for k, v in criteria.items() if v}
    name = criteria.pop("PatientName", "")
    patterns = name.dicom_patterns() if isinstance(name, query.Typed) else [name] if name else [""]
    answers = {}
    for pattern in patterns:
        keys = {key: "" for key in STUDY_KEYS} | criteria
        if pattern:
            keys["PatientName"] = pattern
        for dataset in scu.find(peer, Level.STUDY, keys):
            answer = {key: _text(dataset.get(key)) for key in STUDY_KEYS}
            if answer["StudyInstanceUID"]:
                answers.setdefault(answer["StudyInstanceUID"], answer)
    here = dict(Study.objects.filter(study_instance_uid__in=list(answers))
                .values_list("study_instance_uid", "public_id"))
    found = sorted(answers.values(), key=lambda a: (a["StudyDate"], a["StudyTime"]), reverse=True)
    for answer in found:
        answer["here"] = here.get(answer["StudyInstanceUID"], "")
    return found


def _text(value):
    if value is None:
        return ""
    if type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()

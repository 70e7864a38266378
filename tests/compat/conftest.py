"""One Debian Orthanc (with its DICOMweb plugin) and one pacsweb for the whole
compat session, holding the same instances."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import orthanc, servers
from tests.dicomgen import make_instance, pydicom_test_files, uid

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
_FILES = {}  # name → bytes of the session's files


@dataclass
class Side:
    """One server of the pair: where it is and how to authenticate."""

    name: str
    url: str
    auth: str
    # Base URLs written as "{base}" in answers: the server's own, and the other's (which
    # pacsweb shows as the URL of a peer that is the Orthanc).
    bases: tuple = ()

    def request(self, method, path, body=None, headers=None):
        """(status, content type, body bytes) of one request; never raises on a 4xx/5xx."""
        status, answer_headers, data = servers.request(self.url + path, method=method, body=body,
                                                       headers=headers, auth=self.auth)
        content_type = {k.lower(): v for k, v in answer_headers.items()}.get("content-type", "")
        # Absolute URLs in answers (DICOMweb's RetrieveURL, BulkDataURI) differ by port only.
        for base in (self.url, *self.bases):
            data = data.replace(base.encode(), b"{base}")
        return status, content_type, data


@dataclass
class Pair:
    orthanc: Side
    pacsweb: Side
    # Placeholders of the corpus ({study}, {instance@CT_small.dcm}, ...) → their values.
    ids: dict = field(default_factory=dict)
    # Name of each loaded file → (Orthanc's answer, pacsweb's answer) to its upload.
    uploads: dict = field(default_factory=dict)
    # Case id → the differences found, filled as the cases run.
    results: dict = field(default_factory=dict)
    # Side name → placeholders whose values are that server's own (Case.capture).
    own_ids: dict = field(default_factory=lambda: {"Orthanc": {}, "pacsweb": {}})


def generated_files():
    """Two patients, three studies, multi-series and multi-instance, as dicomgen makes them."""
    files = {}
    for patient in ("COMPAT-1", "COMPAT-2"):
        for study_number in (1, 2) if patient == "COMPAT-1" else (1,):
            study_uid = uid(patient, "study", study_number)
            for series_number in (1, 2):
                series_uid = uid(study_uid, "series", series_number)
                for number in (1, 2, 3):
                    files[f"{patient}-study{study_number}-series{series_number}-{number}.dcm"] = make_instance(
                        patient_id=patient, patient_name=f"COMPAT^{patient[-1]}", study_uid=study_uid,
                        series_uid=series_uid, instance_number=number, rows=8, columns=8,
                        study_date=f"2026011{study_number}", accession_number=f"ACC{patient[-1]}{study_number}",
                        modality="MR" if series_number == 2 else "CT", SeriesNumber=series_number,
                        study_description=f"STUDY {study_number}", series_description=f"SERIES {series_number}",
                    )
    return files


def corpus_file_names():
    # pydicom ships a few names twice (DICOMDIR, README.txt in two folders): the last one is loaded.
    return list(dict.fromkeys([*generated_files(), *(os.path.basename(path) for path in pydicom_test_files())]))


def corpus_files():
    files = generated_files()
    for path in pydicom_test_files():
        files[os.path.basename(path)] = Path(path).read_bytes()
    return files


def load_late(pair, name):
    """pacsweb's answer to a file Orthanc refused; what it stored goes again."""
    answer = _post(pair.pacsweb, _FILES[name])
    if _stored_id(answer) and answer[1]["Status"] == "Success":
        pair.pacsweb.request("DELETE", f"/instances/{_stored_id(answer)}")
    return answer


def _post(side, data):
    status, _, body = side.request("POST", "/instances", data, {"Content-Type": "application/dicom"})
    return status, _json(body)


def _stored_id(answer):
    status, body = answer
    return body["ID"] if status == 200 and isinstance(body, dict) and "ID" in body else None


def _json(data):
    try:
        return json.loads(data)
    except ValueError:
        return None


@pytest.fixture(scope="session")
def pair(tmp_path_factory):
    missing = [path for path in (orthanc.ORTHANC, DICOMWEB_PLUGIN) if not os.path.exists(path)]
    if missing:
        pytest.fail(f"the differential tests need Debian's orthanc and orthanc-dicomweb ({', '.join(missing)} "
                    "missing): `make test` installs them when run as root")
    # Orthanc's C-FIND SCP answers both servers' queries (corpus._queries): both call as
    # PACSWEB from loopback, which the corpus adds to both servers' modalities.
    dicom_port = servers.free_port()
    config = {"Name": "compat", "DicomAet": "PACSWEB", "DicomPort": dicom_port, "StableAge": 3600,
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    with orthanc.OrthancServer(config=config, plugins=[DICOMWEB_PLUGIN]) as reference:
        server = servers.Server(tmp_path_factory.mktemp("compat") / "pacsweb", PACS_STABLE_AGE=3600)
        try:
            pair = Pair(Side("Orthanc", reference.url, reference.auth_header, (server.url,)),
                        Side("pacsweb", server.url, servers.auth_header(), (reference.url,)))
            pair.ids.update(orthanc_dicom_port=str(dicom_port), orthanc_url=reference.url)
            _FILES.update(corpus_files())
            load(pair, _FILES)
            yield pair
            if os.environ.get("PACS_COMPAT_REPORT"):
                # Every difference found, listed or not: what a new row of the table starts from.
                Path(os.environ["PACS_COMPAT_REPORT"]).write_text(json.dumps(pair.results, indent=1))
        finally:
            server.stop()


def load(pair, files):
    """Make both hold the same instances, stored in the same order.

    Every file goes to Orthanc; those it stores go to pacsweb too. Orthanc then
    forgets everything and stores again only what both stored under the same id,
    so that no resource of Orthanc keeps the tags of an instance pacsweb refused.
    The files Orthanc refused reach pacsweb last (test_upload_answer), after the
    other cases, so that pacsweb's own deletion of them disturbs no answer.
    """
    common, shared = [], []
    for name, data in files.items():
        orthanc_answer = _post(pair.orthanc, data)
        pacsweb_answer = _post(pair.pacsweb, data) if _stored_id(orthanc_answer) else None
        pair.uploads[name] = [orthanc_answer, pacsweb_answer]
        if pacsweb_answer is None:
            continue
        if _stored_id(orthanc_answer) == _stored_id(pacsweb_answer):
            shared.append(name)
            # What pacsweb stored anew, Orthanc stores again; an instance both already
            # held (an earlier file had its SOP Instance UID) is named, not stored again.
            if pacsweb_answer[1]["Status"] == "Success":
                common.append(name)
        elif _stored_id(pacsweb_answer) and pacsweb_answer[1]["Status"] == "Success":
            pair.pacsweb.request("DELETE", f"/instances/{_stored_id(pacsweb_answer)}")
    _, _, body = pair.orthanc.request("GET", "/patients")
    for patient in json.loads(body):
        pair.orthanc.request("DELETE", f"/patients/{patient}")
    for name in common:
        _post(pair.orthanc, files[name])
    for name in shared:
        answer = pair.uploads[name][0][1]
        pair.ids[f"instance@{name}"] = answer["ID"]
        pair.ids[f"series@{name}"] = answer["ParentSeries"]
        pair.ids[f"study@{name}"] = answer["ParentStudy"]
        pair.ids[f"patient@{name}"] = answer["ParentPatient"]
    first = "COMPAT-1-study1-series1-1.dcm"
    for level in ("patient", "study", "series", "instance"):
        pair.ids[level] = pair.ids[f"{level}@{first}"]
    status, _, body = pair.orthanc.request("GET", f"/instances/{pair.ids['instance']}/simplified-tags")
    tags = json.loads(body)
    pair.ids.update(study_uid=tags["StudyInstanceUID"], series_uid=tags["SeriesInstanceUID"],
                    sop_uid=tags["SOPInstanceUID"], patient_id=tags["PatientID"])

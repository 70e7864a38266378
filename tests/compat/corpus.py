"""The requests sent to both Orthanc and pacsweb, one line a case, in the order they run.

`{patient}`, `{study}`, `{series}`, `{instance}` are the first generated instance
and its parents; `{instance@CT_small.dcm}` (any level) names a file of pydicom's test
data; `{study_uid}`, `{series_uid}`, `{sop_uid}`, `{patient_id}` are the generated
instance's identifiers. Read-only cases come first, then the ones that change the
archive (in both, identically), deletions last.

A case compares "json" (status, keys, value types, and values but those in
compare.VOLATILE), "shape" (the same without values: for answers that depend on what
ran before, such as a page of /changes), "bytes" (status and the exact body), "type"
(status and content type), or "status" alone. A case's id is its method and path (plus its label); the table of
deliberate differences in docs/orthanc-compatibility.md names cases by that id.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.data import get_testdata_file

UNKNOWN = "00000000-00000000-00000000-00000000-00000000"
LEVELS = ("patients", "studies", "series", "instances")
SINGULAR = {"patients": "patient", "studies": "study", "series": "series", "instances": "instance"}
# pydicom's files whose resources and tags every route is asked about: private tags,
# compression, sequences, multi-frame, a structured report, a waveform.
ODD_FILES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm",
             "liver_1frame.dcm", "test-SR.dcm", "waveform_ecg.dcm")


# A path → its route as Orthanc's OpenAPI writes it.
ROUTE_FORMS = [
    (r"\{(patient|study|series|instance)(@[^}]*)?\}", "{id}"),
    (UNKNOWN, "{id}"),
    (r"/(modalities|peers|jobs|queries|storage-commitment)/[^/]+", r"/\1/{id}"),
    (r"/answers/[0-9]+(/|$)", r"/answers/{index}\1"),
    (r"/(metadata|attachments)/[^/]+", r"/\1/{name}"),
    (r"/content/.+", "/content/{path}"),
    (r"/frames/[0-9]+/", "/frames/{frame}/"),
    (r"^/instances/\{id\}/frames/[0-9]+$", "/instances/{id}/frames/{frame}"),
    (r"/frames/[0-9,]+$", "/frames/{frames}"),
    (r"/bulk/[0-9a-fA-F]{8}$", "/bulk/{tag}"),
    (r"/dicom-web/studies/1\.2\.3\.4", "/dicom-web/studies/{study_uid}"),
]


@dataclass
class Case:
    method: str
    path: str
    body: object = None
    compare: str = "json"
    label: str = ""
    headers: dict = field(default_factory=dict)
    # Members whose values differ by configuration, not behaviour (beyond compare.VOLATILE).
    volatile: tuple = ()
    # Keep each server's own "ID" of the answer as this placeholder for the next cases
    # (a query made on a modality has a different id on each).
    capture: str = ""

    @property
    def id(self):
        return f"{self.method} {self.path}" + (f" {self.label}" if self.label else "")

    @property
    def route(self):
        """The route the case exercises, as docs/orthanc-compatibility.md writes it."""
        import re

        path = self.path.split("?")[0]
        for pattern, replacement in ROUTE_FORMS:
            path = re.sub(pattern, replacement, path)
        return f"{self.method} {path}"

    def encoded_body(self):
        if self.body is None:
            return None
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


def get(path, **kwargs):
    return Case("GET", path, **kwargs)


def post(path, body=None, label=None, **kwargs):
    if label is None and body is not None:
        label = json.dumps(body, separators=(",", ":")) if not isinstance(body, bytes) else f"{len(body)} bytes"
    return Case("POST", path, body, label=label or "", **kwargs)


def put(path, body=None, label="", **kwargs):
    return Case("PUT", path, body, label=label, **kwargs)


def delete(path, **kwargs):
    return Case("DELETE", path, **kwargs)


def _resources():
    cases = []
    for plural in LEVELS:
        one = "{" + SINGULAR[plural] + "}"
        cases += [
            get(f"/{plural}"),
            get(f"/{plural}?expand"),
            get(f"/{plural}?expand&since=2&limit=3"),
            get(f"/{plural}?since=1&limit=2"),
            get(f"/{plural}?limit=0"),
            get(f"/{plural}?since=1000"),
            get(f"/{plural}?limit=abc"),
            get(f"/{plural}/{one}"),
            get(f"/{plural}/{one}?short"),
            get(f"/{plural}/{UNKNOWN}"),
            get(f"/{plural}/{one}/statistics"),
            get(f"/{plural}/{UNKNOWN}/statistics"),
            post(f"/{plural}/{one}", b"x", label="wrong method"),
        ]
    for plural, related in (("patients", ("studies", "series", "instances")),
                            ("studies", ("patient", "series", "instances")),
                            ("series", ("patient", "study", "instances")),
                            ("instances", ("patient", "study", "series"))):
        one = "{" + SINGULAR[plural] + "}"
        for other in related:
            cases.append(get(f"/{plural}/{one}/{other}"))
            cases.append(get(f"/{plural}/{UNKNOWN}/{other}"))
        cases.append(get(f"/{plural}/{one}/{related[-1]}?expand"))
    cases += [get("/studies/{study}/series?short"), get("/patients/{patient}/studies?full"),
              get("/studies?expand&requestedTags=ModalitiesInStudy;NumberOfStudyRelatedInstances;PatientName"),
              get("/studies/{study}?requestedTags=StudyDate;PatientID"),
              get("/series/{series}/instances?requestedTags=InstanceNumber;SOPClassUID"),
              get("/studies/{study}?requestedTags=NotAKeyword")]
    for name in ODD_FILES:
        cases += [get(f"/instances/{{instance@{name}}}"), get(f"/series/{{series@{name}}}"),
                  get(f"/studies/{{study@{name}}}"), get(f"/patients/{{patient@{name}}}")]
    return cases


def _instances():
    cases = []
    for name in ("", *(f"@{n}" for n in ODD_FILES)):
        one = "{instance" + name + "}"
        cases += [
            get(f"/instances/{one}/tags"),
            get(f"/instances/{one}/tags?simplify"),
            get(f"/instances/{one}/tags?short"),
            get(f"/instances/{one}/simplified-tags"),
            get(f"/instances/{one}/frames"),
            get(f"/instances/{one}/file", compare="bytes"),
            get(f"/instances/{one}/content"),
            get(f"/instances/{one}/content/0010-0010", compare="bytes"),
            get(f"/instances/{one}/metadata"),
            get(f"/instances/{one}/metadata?expand"),
            get(f"/instances/{one}/attachments"),
        ]
    cases += [
        get("/instances/{instance@rtplan.dcm}/content/300a-0010"),
        get("/instances/{instance@rtplan.dcm}/content/300a-0010/0"),
        get("/instances/{instance@rtplan.dcm}/content/300a-0010/0/300a-0012", compare="bytes"),
        get("/instances/{instance}/content/0010-0010/0"),
        get("/instances/{instance}/content/9999-9999"),
        get(f"/instances/{UNKNOWN}/tags"),
        get(f"/instances/{UNKNOWN}/simplified-tags"),
        get(f"/instances/{UNKNOWN}/file"),
        get(f"/instances/{UNKNOWN}/frames"),
        get(f"/instances/{UNKNOWN}/content"),
        get("/instances/{instance}/frames/0/preview", compare="type"),
        get("/instances/{instance}/frames/0/rendered", compare="type"),
        get("/instances/{instance}/preview", compare="type"),
        get("/instances/{instance}/rendered", compare="type"),
        get(f"/instances/{UNKNOWN}/preview", compare="status"),
    ]
    for name in ("ReceptionDate", "RemoteAET", "Origin", "IndexInSeries", "TransferSyntax", "SopClassUid",
                 "PixelDataOffset", "LastUpdate", "MainDicomTagsSignature", "Nonexistent"):
        cases.append(get(f"/instances/{{instance}}/metadata/{name}", compare="bytes"))
    for plural in LEVELS[:3]:
        one = "{" + SINGULAR[plural] + "}"
        cases += [get(f"/{plural}/{one}/metadata?expand"), get(f"/{plural}/{one}/metadata/LastUpdate", compare="status"),
                  get(f"/{plural}/{one}/attachments"), get(f"/{plural}/{UNKNOWN}/metadata")]
    for part in ("", "/info", "/size", "/md5", "/is-compressed", "/compressed-size", "/uncompressed-size",
                 "/compressed-md5", "/uncompressed-md5"):
        cases.append(get(f"/instances/{{instance}}/attachments/dicom{part}"))
    cases += [
        get("/instances/{instance}/attachments/dicom/data", compare="bytes"),
        get("/instances/{instance}/attachments/dicom/compressed-data", compare="bytes"),
        get("/instances/{instance}/attachments/nonexistent"),
        get("/instances/{instance}/attachments/dicom/nonexistent"),
        get("/instances/{instance}/attachments?full"),
    ]
    return cases


def _orthanc_rest():
    """Routes the orthanc-rest branch added (read-only ones; resources of every level)."""
    cases = []
    for plural in LEVELS[:3]:
        one = "{" + SINGULAR[plural] + "}"
        cases += [get(f"/{plural}/{one}/instances-tags?short"), get(f"/{plural}/{one}/shared-tags"),
                  get(f"/{plural}/{one}/shared-tags?simplify"), get(f"/{plural}/{one}/module"),
                  get(f"/{plural}/{UNKNOWN}/shared-tags")]
    cases += [
        get("/instances/{instance}/module"), get("/studies/{study}/module-patient"),
        get("/instances/{instance}/header"), get("/instances/{instance@CT_small.dcm}/header?simplify"),
        get("/series/{series}/ordered-slices"), get("/patients/{patient}/protected", compare="bytes"),
        get("/instances/{instance}/pdf", compare="status"),
        get("/instances/{instance}/image-uint16", compare="type"), get("/instances/{instance}/frames/0/image-uint8",
                                                                      compare="type"),
        get("/instances/{instance}/numpy", compare="type"),
        get("/tools", compare="shape"), get("/tools/now", compare="type"), get("/tools/generate-uid?level=study",
                                                                             compare="type"),
        get("/tools/default-encoding", compare="bytes"), get("/tools/accepted-transfer-syntaxes", compare="shape"),
        get("/plugins"), get("/exports", compare="shape"), get("/queries", compare="shape"),
        post("/tools/lookup", "{study_uid}", label="a study UID"),
        post("/tools/lookup", "1.2.3.4.5", label="an unknown UID"),
        post("/tools/bulk-content", {"Resources": ["{study}", "{instance}"], "Level": "Series"}),
        post("/tools/count-resources", {"Level": "Study", "Query": {"PatientID": "COMPAT-1"}}),
        post("/tools/dicom-echo", '{"AET": "PACSWEB", "Host": "127.0.0.1", "Port": {orthanc_dicom_port}}'),
        get("/instances/{instance}/image-uint8", compare="type"), get("/instances/{instance}/image-int16", compare="type"),
        get("/instances/{instance}/frames/0/image-uint16", compare="type"),
        get("/instances/{instance}/frames/0/image-int16", compare="type"),
        get("/instances/{instance}/frames/0/numpy", compare="type"),
        get("/series/{series}/numpy", compare="type"), get("/series/{series@CT_small.dcm}/numpy?rescale=false",
                                                             compare="type"),
        get(f"/series/{UNKNOWN}/numpy", compare="status"),
        get("/instances/{instance}/frames/0/raw", compare="bytes"),
        get("/instances/{instance@JPEG2000.dcm}/frames/0/raw", compare="bytes"),
        get("/instances/{instance@SC_rgb_rle_2frame.dcm}/frames/0/raw", compare="bytes"),
        get("/instances/{instance@CT_small.dcm}/frames/0/raw", compare="bytes"),
        get("/instances/{instance}/frames/7/raw", compare="status"),
        get("/instances/{instance}/frames/0/raw.gz", compare="type"),
        get("/instances/{instance}/frames/0"), get("/instances/{instance}/frames/9", compare="status"),
        get("/instances/{instance}/matlab", compare="status"), get("/instances/{instance}/frames/0/matlab",
                                                                  compare="status"),
        get("/tools/log-level", compare="type"), get("/tools/metrics", compare="bytes"),
        delete("/exports", compare="status"),
        # Refused on purpose (docs/orthanc-compatibility.md says why).
        get("/plugins/explorer.js", compare="status"), get("/tools/dicom-conformance", compare="status"),
        get("/tools/unknown-sop-class-accepted", compare="status"),
        put("/tools/unknown-sop-class-accepted", "0", compare="status"),
        put("/tools/accepted-transfer-syntaxes", "*", compare="status"),
        post("/tools/execute-script", "print(1)", compare="status"),
        get("/storage-commitment/nonexistent", compare="status"),
        post("/storage-commitment/nonexistent/remove", compare="status"),
    ]
    return cases


def _find():
    find = "/tools/find"
    queries = [
        {"Level": "Patient", "Query": {}},
        {"Level": "Patient", "Query": {"PatientID": "COMPAT-*"}},
        {"Level": "Patient", "Query": {"PatientName": "compat^1"}},
        {"Level": "Patient", "Query": {"PatientName": "compat^1"}, "CaseSensitive": True},
        {"Level": "Patient", "Query": {"PatientName": "COMPAT^?"}},
        {"Level": "Study", "Query": {"StudyDate": "20260111-20260112"}},
        {"Level": "Study", "Query": {"StudyDate": "20260112-"}},
        {"Level": "Study", "Query": {"StudyDate": "-20260111"}},
        {"Level": "Study", "Query": {"StudyDate": "20260111"}},
        {"Level": "Study", "Query": {"AccessionNumber": "ACC1*"}, "Expand": True},
        {"Level": "Study", "Query": {"PatientID": "COMPAT-1"}, "Expand": True},
        {"Level": "Study", "Query": {"StudyDescription": "*1"}},
        {"Level": "Study", "Query": {"ModalitiesInStudy": "MR"}},
        {"Level": "Study", "Query": {"ModalitiesInStudy": "CT\\MR"}},
        {"Level": "Series", "Query": {"Modality": "MR"}},
        {"Level": "Series", "Query": {"Modality": "MR"}, "Expand": True},
        {"Level": "Series", "Query": {"Modality": "CT", "PatientID": "COMPAT-1"}},
        {"Level": "Instance", "Query": {"InstanceNumber": "2"}},
        {"Level": "Instance", "Query": {"SOPInstanceUID": "{sop_uid}"}, "Expand": True},
        {"Level": "Instance", "Query": {"PatientID": "COMPAT-2"}, "Limit": 2},
        {"Level": "Instance", "Query": {"PatientID": "COMPAT-2"}, "Limit": 2, "Since": 2},
        {"Level": "Study", "Query": {"PatientID": "COMPAT-1"}, "Expand": True, "RequestedTags": ["StudyDate"]},
        {"Level": "Study", "Query": {}, "Limit": 0},
        {"Level": "Study", "Query": {"StudyInstanceUID": "{study_uid}"}},
        {"Level": "Patient", "Query": {"PatientID": "NOSUCH"}},
        {"Level": "Study", "Query": {"StudyInstanceUID": "1.2.826.0.1.3680043.10.1401.*"}},
        {"Level": "Series", "Query": {"SeriesDescription": "series ?"}, "CaseSensitive": False},
        {"Level": "Instance", "Query": {}, "Since": 1000, "Limit": 5},
        {"Level": "Study", "Query": {}, "Limit": -1},
        {"Level": "Study", "Query": {}, "Limit": "ten"},
        {"Level": "Study", "Query": {"PatientName": 5}},
        {"Level": "Nonexistent", "Query": {}},
        {"Level": "Study", "Query": "not an object"},
        {"Level": "Study"},
    ]
    return [post(find, q) for q in queries] + [post(find, b"{not json", label="bad JSON"),
                                              get(find, label="wrong method"), put(find, b"{}", label="wrong method")]


def _archives():
    cases = []
    for plural in LEVELS[:3]:
        one = "{" + SINGULAR[plural] + "}"
        cases += [get(f"/{plural}/{one}/archive", compare="type"), get(f"/{plural}/{one}/media", compare="type"),
                  get(f"/{plural}/{UNKNOWN}/archive", compare="status")]
    cases += [
        post("/tools/create-archive", {"Resources": ["{study}"]}, compare="type"),
        post("/tools/create-media", {"Resources": ["{study}"]}, compare="type"),
        post("/tools/create-archive", {"Resources": [UNKNOWN]}, compare="status"),
        post("/tools/create-archive", b"{", label="bad JSON", compare="status"),
    ]
    return cases


def _network():
    modality = {"AET": "REMOTE", "Host": "127.0.0.1", "Port": 104}
    peer = {"Url": "http://127.0.0.1:1/"}
    return [
        get("/modalities"), get("/modalities?expand"), get("/modalities/nonexistent"),
        put("/modalities/remote", modality),
        get("/modalities", label="after PUT"), get("/modalities?expand", label="after PUT"), get("/modalities/remote"),
        get("/modalities/remote/configuration"),
        put("/modalities/bad", b"{", label="bad JSON"),
        put("/modalities/bad", {"AET": "BAD"}, label="no host"),
        put("/peers/bad", b"{", label="bad JSON"),
        post("/modalities", b"{}", label="wrong method"),
        get("/peers"), get("/peers?expand"), get("/peers/nonexistent"),
        put("/peers/remote", peer),
        get("/peers", label="after PUT"), get("/peers?expand", label="after PUT"), get("/peers/remote"),
        get("/peers/remote/configuration"),
        delete("/modalities/remote"), delete("/peers/remote"), get("/modalities", label="after DELETE"),
        get("/jobs"), get("/jobs?expand"), get("/jobs/nonexistent"),
    ]


INSTANCE_URL = "/dicom-web/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def _queries():
    """Both servers query one C-FIND SCP: Orthanc's own (it knows pacsweb's and its own
    AE title, PACSWEB), so that the answers differ by how each shows them only."""
    modality = '{"AET": "PACSWEB", "Host": "127.0.0.1", "Port": {orthanc_dicom_port}}'
    query = "/queries/{query}"
    return [
        put("/modalities/pacs", modality, label="the Orthanc SCP"),
        post("/modalities/pacs/echo", "{}"),
        post("/modalities/pacs/query", {"Level": "Study", "Query": {"PatientID": "COMPAT*", "StudyDescription": ""}},
             capture="query", volatile=("ID", "Path")),
        post("/modalities/pacs/find-study", {"PatientID": "COMPAT*"}),
        post("/modalities/pacs/find-series", {"PatientID": "COMPAT-1", "StudyInstanceUID": "{study_uid}"}),
        post("/modalities/pacs/find-patient", {"PatientID": "COMPAT-1"}),
        post("/modalities/pacs/find", {"PatientID": "COMPAT-1"}, compare="status"),
        post("/modalities/pacs/storage-commitment", {"DicomInstances": []}, compare="status"),
        get(query), get(f"{query}/answers"), get(f"{query}/answers?expand"), get(f"{query}/answers?expand&simplify"),
        get(f"{query}/answers/0/content"), get(f"{query}/answers/0/content?simplify"),
        get(f"{query}/level", compare="bytes"), get(f"{query}/modality", compare="bytes"), get(f"{query}/query"),
        get(f"{query}/answers/9/content"),
        get(f"{query}/answers/0"), get(f"{query}/answers/9", compare="status"),
        post(f"{query}/answers/0/query-series", "{}", capture="child_query", volatile=("ID", "Path")),
        get("/queries/{child_query}/answers?expand&simplify"), get("/queries/{child_query}/query"),
        get("/queries/{child_query}/level", compare="bytes"),
        post(f"{query}/answers/0/query-instances", {"Query": {"SOPClassUID": ""}}, capture="instances_query",
             volatile=("ID", "Path")),
        get("/queries/{instances_query}/query"),
        post(f"{query}/answers/9/query-series", "{}", compare="status"),
        delete("/queries/{child_query}"), get("/queries/{child_query}", label="after DELETE", compare="status"),
        post("/modalities/pacs/query", {"Level": "Series", "Query": {"StudyInstanceUID": "{study_uid}",
                                                                   "Modality": "", "SeriesNumber": ""}},
             capture="series_query", volatile=("ID", "Path")),
        get("/queries/{series_query}/answers?expand"),
        post("/modalities/pacs/query", {"Level": "Planet", "Query": {}}),
        post("/modalities/nonexistent/query", {"Level": "Study", "Query": {}}),
        get("/queries/nonexistent/answers"),
        delete("/modalities/pacs"),
        put("/peers/orthanc", '{"Url": "{orthanc_url}", "Username": "bench", "Password": "bench-password"}',
            label="the Orthanc"),
        get("/peers/orthanc/system", volatile=SYSTEM),
        get("/peers/orthanc/configuration"),
        post("/peers/orthanc/store-straight", Path(get_testdata_file("CT_small.dcm")).read_bytes(),
             label="a file the Orthanc holds"),
        delete("/peers/orthanc"),
    ]


def _dicomweb():
    qido = "/dicom-web"
    return [
        get(f"{qido}/studies"),
        get(f"{qido}/studies?PatientID=COMPAT-1"),
        get(f"{qido}/studies?PatientName=COMPAT*"),
        get(f"{qido}/studies?StudyDate=20260111-20260112"),
        get(f"{qido}/studies?StudyInstanceUID={{study_uid}}"),
        get(f"{qido}/studies?ModalitiesInStudy=MR"),
        get(f"{qido}/studies?limit=1&offset=1&PatientID=COMPAT-1", compare="shape"),
        get(f"{qido}/studies?includefield=StudyDescription&PatientID=COMPAT-2"),
        get(f"{qido}/studies/{{study_uid}}/series"),
        get(f"{qido}/studies/{{study_uid}}/series?Modality=MR"),
        get(f"{qido}/studies/{{study_uid}}/instances"),
        get(f"{qido}/studies/{{study_uid}}/series/{{series_uid}}/instances"),
        get(f"{qido}/series?Modality=CT&PatientID=COMPAT-2"),
        get(f"{qido}/instances?PatientID=COMPAT-2&InstanceNumber=3"),
        get(f"{qido}/studies?PatientID=NOSUCH"),
        get(f"{qido}/studies?00100020=COMPAT-1"),
        get(f"{qido}/series?SeriesInstanceUID={{series_uid}}"),
        get(f"{qido}/instances?SOPInstanceUID={{sop_uid}}"),
        get(f"{qido}/studies?limit=abc", compare="status"),
        get(f"{qido}/studies/{{study_uid}}/series/{{series_uid}}/instances/{{sop_uid}}", compare="status"),
        get(f"{qido}/studies/{{study_uid}}/series/{{series_uid}}/instances/{{sop_uid}}/metadata"),
        get(f"{qido}/studies/{{study_uid}}/series/{{series_uid}}/metadata"),
        get(f"{qido}/studies/{{study_uid}}/metadata"),
        get(f"{qido}/studies/{{study_uid}}", compare="type"),
        get(f"{qido}/studies/{{study_uid}}/series/{{series_uid}}", compare="type"),
        get(f"{INSTANCE_URL}", compare="type"),
        get(f"{INSTANCE_URL}/frames/1", compare="type"),
        get(f"{INSTANCE_URL}/rendered", compare="type"),
        get(f"{INSTANCE_URL}/bulk/7fe00010", compare="type"),
        get(f"{qido}/studies/1.2.3.4", compare="status"),
        get("/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID={sop_uid}"
            "&contentType=application/dicom", compare="bytes"),
        get("/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID={sop_uid}",
            compare="type"),
        get("/wado?requestType=WADO&studyUID={study_uid}&seriesUID={series_uid}&objectUID=1.2.3", compare="status"),
    ]


def _changes_and_writes():
    return [
        get("/changes"), get("/changes?limit=5"), get("/changes?since=3&limit=4", compare="shape"), get("/changes?last"),
        get("/changes?limit=abc"),
        get("/changes?since=100000&limit=5", compare="shape"),
        post("/changes", b"{}", label="wrong method"),
        put("/instances/{instance}/metadata/1024", "a value"),
        get("/instances/{instance}/metadata/1024", compare="bytes"),
        put("/studies/{study}/metadata/1025", "study value"),
        get("/studies/{study}/metadata?expand", label="after PUT"),
        put("/instances/{instance}/metadata/NotAName", "x"),
        put("/instances/{instance}/attachments/1030", b"attachment bytes"),
        get("/instances/{instance}/attachments/1030/data", compare="bytes"),
        get("/instances/{instance}/attachments/1030/info"),
        get("/instances/{instance}/attachments/1030/size", compare="bytes"),
        get("/instances/{instance}/attachments", label="after PUT"),
        post("/instances/{instance}/attachments/1030/verify-md5"),
        post("/instances/{instance}/attachments/dicom/verify-md5"),
        post("/instances/{instance}/attachments/nonexistent/verify-md5", compare="status"),
        post("/instances/{instance}/attachments/1030/uncompress"),
        post("/instances/{instance}/attachments/1030/compress", compare="status"),
        delete("/instances/{instance}/attachments/1030"),
        delete("/instances/{instance}/metadata/1024"),
        delete("/studies/{study}/metadata/1025"),
        get("/instances/{instance}/metadata/1024", label="after DELETE", compare="status"),
        get("/changes?last", label="after writes"),
        get("/statistics", label="after writes"),
        delete("/instances/{instance@CT_small.dcm}"),
        delete("/series/{series@MR_small.dcm}"),
        delete("/studies/{study@rtplan.dcm}"),
        delete("/patients/{patient@liver_1frame.dcm}"),
        delete(f"/patients/{UNKNOWN}"),
        get("/statistics", label="after DELETE"),
        get("/changes?limit=1000", label="after DELETE"),
        get("/changes?last", label="after DELETE"),
        get("/patients", label="after DELETE"),
        delete("/changes"),
        get("/changes", label="after DELETE /changes"),
        post("/instances/{instance}/reconstruct", {}, compare="status"),
        post("/series/{series}/reconstruct", {}, compare="status"),
        post("/studies/{study}/reconstruct", {}, compare="status"),
        post("/patients/{patient}/reconstruct", {}, compare="status"),
        post("/tools/reconstruct", {}, compare="status"),
    ]


# What /system says of the server's configuration: ports, names, versions.
SYSTEM = ("Name", "HttpPort", "DicomPort", "Version", "DatabaseBackendPlugin", "StorageAreaPlugin", "PluginsEnabled")

CASES = [
    get("/system", volatile=SYSTEM), get("/statistics"),
    put("/system", b"{}", label="wrong method"), delete("/statistics", label="wrong method"),
    *_resources(), *_instances(), *_orthanc_rest(), *_find(), *_archives(), *_network(), *_queries(), *_dicomweb(),
    *_changes_and_writes(),
]

"""Arranging DICOMweb tests: storing files, building and reading multipart bodies.

The multipart reader here is deliberately independent of api.dicomweb's own
parser, so a test never checks the server with the server's code.
"""

import io
import json

import pydicom

from tests.dicomgen import make_instance, pydicom_test_files, uid
from tests.storing import store_instance as store  # noqa: F401 (the DICOMweb tests import it from here)

BOUNDARY = "pacsweb-test-boundary"


def study(api, count=1, patient_id="P1", key="s1", **kwargs):
    """Store `count` instances of one series; return their bytes in instance order."""
    study_uid, series_uid = uid(patient_id, key), uid(patient_id, key, "series")
    files = [make_instance(patient_id=patient_id, study_uid=study_uid, series_uid=series_uid,
                           instance_number=n + 1, rows=16, columns=16, **kwargs) for n in range(count)]
    for data in files:
        store(api, data)
    return files


def dataset(data):
    return pydicom.dcmread(io.BytesIO(data))


def variant(data, sop_uid, **changes):
    """The same file with another SOP Instance UID and some attributes changed (pixel data kept unless given)."""
    ds = dataset(data)
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def pydicom_file(name):
    """A file shipped inside the pydicom wheel, by name."""
    return next(p for p in pydicom_test_files() if p.endswith("/" + name))


def multipart(parts, boundary=BOUNDARY, part_type="application/dicom", close=True):
    """A multipart body of the given byte strings (RFC 2046 §5.1.1)."""
    body = b""
    for part in parts:
        headers = f"Content-Type: {part_type}\r\n" if part_type else ""
        body += f"--{boundary}\r\n{headers}\r\n".encode() + part + b"\r\n"
    if close:
        body += f"--{boundary}--\r\n".encode()
    return body


def read_parts(response):
    """[(part headers text, part bytes)] of a multipart/related response."""
    content_type = response["Content-Type"]
    assert content_type.startswith("multipart/related"), content_type
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    body = b"".join(response.streaming_content) if response.streaming else response.content
    pieces = (b"\r\n" + body).split(b"\r\n--" + boundary.encode())
    assert pieces[-1].startswith(b"--"), "no closing boundary"
    parts = []
    for piece in pieces[1:-1]:
        headers, _, content = piece.partition(b"\r\n\r\n")
        parts.append((headers.decode().strip(), content))
    return parts


def streamed_json(response):
    """The JSON of a streamed answer (metadata is streamed instance by instance)."""
    assert response.status_code == 200, response
    return json.loads(b"".join(response.streaming_content))


def tag(keyword):
    return f"{pydicom.datadict.tag_for_keyword(keyword):08X}"


def value(answer, keyword):
    """The Value of an attribute in a DICOM JSON object (None when it has none)."""
    element = answer.get(tag(keyword))
    if element is None or "Value" not in element:
        return None
    return element["Value"]

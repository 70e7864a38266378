"""Storing files through POST /instances: the one helper every test uses.

`api` is Django's test client (in-process); `server` a real server process
(tests/servers.py). A ZIP is built in memory from a list of Part 10 files.
"""

import io
import zipfile

from tests import servers


def post_instance(api, body, content_type="application/dicom"):
    """POST /instances with the body; Django's response, whatever its status."""
    return api.generic("POST", "/instances", body, content_type=content_type)


def store_instance(api, body):
    """Store one file through POST /instances; its Orthanc answer (ID, ParentStudy...)."""
    response = post_instance(api, body)
    assert response.status_code == 200, response.content
    return response.json()


def zip_of(files):
    """A ZIP (stored, not deflated) of the files, named 00000.dcm, 00001.dcm..."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for n, data in enumerate(files):
            archive.writestr(f"{n:05d}.dcm", data)
    return buffer.getvalue()


def store_on(server, data):
    """Store one file on a running server; its Orthanc answer."""
    status, answer = servers.request_json(server.url + "/instances", method="POST", body=data,
                                          headers={"Content-Type": "application/dicom"})
    assert status == 200, answer
    return answer


def store_zip_on(server, files, timeout=300):
    """Store many files on a running server in one request (a ZIP of them); the answer list."""
    status, answer = servers.request_json(server.url + "/instances", method="POST", body=zip_of(files),
                                          headers={"Content-Type": "application/zip"}, timeout=timeout)
    assert status == 200, answer
    return answer

"""Every operation of Orthanc's REST API, as Debian's Orthanc describes it with
`--openapi`, has a row in the route table of docs/orthanc-compatibility.md: implemented,
or refused or absent on purpose. No server runs; Orthanc only writes its description."""

import json
import re
import shutil
import subprocess

import pytest

from tests.compat import table

ORTHANC = "/usr/sbin/Orthanc"
PLACEHOLDER = re.compile(r"^\{([^{}]+)\}$")
# A row's placeholder that stands for a closed set of words in Orthanc's paths, so that
# one row of the table may name the route at every level or every action.
WORDS = {
    "level": {"patients", "studies", "series", "instances"},
    "action": {"cancel", "pause", "resubmit", "resume"},
}


def openapi_operations(tmp_path):
    """{(METHOD, path)} of the running Orthanc build's own OpenAPI description."""
    orthanc = shutil.which(ORTHANC) or shutil.which("Orthanc")
    if orthanc is None:
        pytest.skip(f"Orthanc is not installed ({ORTHANC}): tests/harness.py installs Debian's package")
    target = tmp_path / "orthanc-openapi.json"
    # Orthanc writes the file and exits; it opens no port and needs no configuration.
    subprocess.run([orthanc, f"--openapi={target}"], cwd=tmp_path, capture_output=True, timeout=60, check=True)
    paths = json.loads(target.read_text())["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def _segment_matches(row_segment, segment):
    row_placeholder = PLACEHOLDER.match(row_segment)
    if row_placeholder is None:
        return row_segment == segment
    name = row_placeholder.group(1)
    if PLACEHOLDER.match(segment):
        # Orthanc and the table name the same placeholder differently ({index}, {frame}, {id}).
        return name not in WORDS
    return segment in WORDS.get(name, ())


def covered(operation, rows):
    method, path = operation
    segments = path.strip("/").split("/")
    for row in rows:
        row_method, _, row_path = row.partition(" ")
        row_segments = row_path.strip("/").split("/")
        if row_method == method and len(row_segments) == len(segments) and all(
                _segment_matches(r, s) for r, s in zip(row_segments, segments)):
            return True
    return False


def test_matching_of_generic_rows():
    rows = ["GET /{level}/{id}/attachments/{name}/size", "POST /jobs/{id}/{action}", "GET /jobs/{id}/archive"]
    assert covered(("GET", "/series/{id}/attachments/{name}/size"), rows)
    assert covered(("POST", "/jobs/{id}/pause"), rows)
    assert not covered(("POST", "/jobs/{id}/{key}"), rows)
    assert not covered(("GET", "/jobs/{id}/{key}"), rows)
    assert not covered(("GET", "/labels/{id}/attachments/{name}/size"), rows)
    assert not covered(("PUT", "/series/{id}/attachments/{name}/size"), rows)


def test_route_table_names_every_operation_of_orthancs_openapi(tmp_path):
    operations = openapi_operations(tmp_path)
    # Debian's 1.10 describes 208 operations; far fewer means the description was not read.
    assert len(operations) > 150
    rows = table.routes()  # raises unless every row's state is one of table.ROUTE_STATES
    assert set(rows.values()) <= table.ROUTE_STATES
    missing = sorted(f"{method} {path}" for method, path in operations if not covered((method, path), rows))
    assert not missing, ("operations of Orthanc's OpenAPI without a row in the route table of "
                         "docs/orthanc-compatibility.md:\n" + "\n".join(missing))

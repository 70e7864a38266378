"""OHIF opens studies of every stored syntax in Debian's Chromium, signed in with the console's session.

The viewer is installed once into the repository's var/ohif (through npm, whose
cache keeps the tarball) and shared by later runs. For each study the viewport's
canvas must show non-blank pixels with no error on the page; in a multi-frame
study, scrolling must change the image. pydicom has no multi-frame JPEG colour
ultrasound, so that one is generated (tests.dicomgen.make_ultrasound_jpeg).
"""

import io
import os

import pydicom
import pytest
from PIL import Image, ImageStat

from tests import servers
from tests.console.conftest import open_context, sign_in
from tests.dicomgen import make_ultrasound_jpeg, pydicom_test_files, uid
from tests.storing import store_on
from tests.waiting import wait_for

STUDIES = {  # what the issue asks OHIF to open, from pydicom's test files
    "jpeg2000": "MR_small_jp2klossless.dcm",
    "jpeg-baseline-colour": "SC_rgb_jpeg_dcmtk.dcm",
    "jpeg-ls": "MR_small_jpeg_ls_lossless.dcm",
    "rle-two-frames": "SC_rgb_rle_2frame.dcm",
    "uncompressed": "CT_small.dcm",
}
GENERATED = {"jpeg-baseline-colour-us-20-frames": make_ultrasound_jpeg}
MULTI_FRAME = {"rle-two-frames", "jpeg-baseline-colour-us-20-frames"}


def own_copy(key, name):
    ds = pydicom.dcmread(next(p for p in pydicom_test_files() if os.path.basename(p) == name))
    ds.PatientID, ds.PatientName = f"OHIF-{key}", f"OHIF^{key.upper()}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("ohif", key), uid("ohif", key, "series")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("ohif", key, "instance")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return ds.StudyInstanceUID, out.getvalue()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    # servers.base_env points every server at the repository's var/ohif.
    server = servers.Server(tmp_path_factory.mktemp("ohif") / "node", workers=1, threads=8)
    servers.manage("ohif", "--if-missing", env=server.env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def studies(node):
    uids = {}
    for key, name in STUDIES.items():
        study_uid, data = own_copy(key, name)
        store_on(node, data)
        uids[key] = study_uid
    for key, make in GENERATED.items():
        study_uid = uid("ohif", key)
        store_on(node, make(patient_id=f"OHIF-{key}", patient_name=f"OHIF^{key.upper()}", study_uid=study_uid))
        uids[key] = study_uid
    return uids


@pytest.fixture(scope="module")
def session(browser, node):
    context, page = open_context(browser)
    sign_in(page, node.url, "admin", servers.ADMIN_PASSWORD)
    state = context.storage_state()
    context.close()
    return state


def viewport_picture(page):
    canvas = page.locator(".cornerstone-canvas, [data-viewport-uid] canvas").first
    return Image.open(io.BytesIO(canvas.screenshot())).convert("L")


def shows_an_image(page):
    picture = viewport_picture(page)
    return ImageStat.Stat(picture).stddev[0] > 5 and picture


@pytest.mark.parametrize("key", [*STUDIES, *GENERATED])
def test_ohif_opens_the_study_and_shows_its_pixels(browser, node, studies, session, key):
    context, page = open_context(browser, storage_state=session)
    context.set_default_timeout(60_000)
    try:
        page.goto(f"{node.url}/ohif/viewer?StudyInstanceUIDs={studies[key]}")
        page.wait_for_selector(".cornerstone-canvas, [data-viewport-uid] canvas", state="visible")
        first = wait_for(lambda: shows_an_image(page), timeout=60, what=f"OHIF drawing the {key} study")
        assert page.get_by_text("Something went wrong").count() == 0
        assert page.get_by_text("Error").count() == 0
        if key in MULTI_FRAME:
            page.locator(".cornerstone-canvas, [data-viewport-uid] canvas").first.hover()
            page.mouse.wheel(0, 200)
            wait_for(lambda: list(viewport_picture(page).getdata()) != list(first.getdata()), timeout=30,
                     what="scrolling to the next frame changing the image")
        page.js_errors.check()
    finally:
        context.close()

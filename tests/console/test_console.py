"""The console in a real browser: sign in, search, the study page and its viewer,
upload, background ZIP, modalities, deletion and roles, jobs, the cluster, Query/Retrieve,
and the viewer's client-side windowing, scrolling and measurement."""

import hashlib
import io
import json
import zipfile
from urllib.parse import quote

import numpy as np
import pydicom
from playwright.sync_api import expect

from tests import servers
from tests.peers import RemotePacs
from tests.console.conftest import open_context, sign_in, upload
from tests.console.phantom import ct_series, multiframe
from tests.dicomgen import make_instance, uid

# The displayed image's pixels: a checksum and the mean grey level, read back from a canvas
# (the image is same-origin, so the canvas is not tainted).
PIXELS = """(img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d'); g.drawImage(img, 0, 0);
  const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let hash = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) { hash = (hash * 31 + data[i]) >>> 0; sum += data[i]; }
  return {hash: hash, mean: sum / (data.length / 4), width: img.naturalWidth};
}"""


# The viewer canvas's pixels: a checksum and the mean grey level.
CANVAS = """((c) => {
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let hash = 0, sum = 0;
  for (let i = 0; i < data.length; i += 4) { hash = (hash * 31 + data[i]) >>> 0; sum += data[i]; }
  return {hash: hash, mean: sum / (data.length / 4)};
})"""


def drawn(page, index):
    """The canvas's pixels once it shows slice `index`."""
    page.wait_for_function(f"() => document.getElementById('viewer-canvas').dataset.index === '{index}'")
    return page.evaluate(f"() => {CANVAS}(document.getElementById('viewer-canvas'))")


def md5(data):
    return hashlib.md5(data).hexdigest()


def shown(page, selector):
    """Wait until the <img> has finished loading a real image; its pixels."""
    page.wait_for_function(f"() => {{ const i = document.querySelector({selector!r}); "
                           "return i && i.complete && i.naturalWidth > 0; }")
    return page.eval_on_selector(selector, PIXELS)


def test_sign_in_home_and_sign_out(browser, node, tmp_path):
    upload(node, ct_series("home", 3, patient_name="HOME^PAGE"))
    context, page = open_context(browser)
    try:
        page.goto(node.url + "/")  # the root leads to the console, which asks to sign in
        assert "/ui/login/" in page.url
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", "wrong")
        page.click("section.login button[type=submit]")
        assert "do not match" in page.inner_text(".alert.error")
        sign_in(page, node.url, "admin", servers.ADMIN_PASSWORD)
        assert page.inner_text("h1") == "Archive overview"
        assert int(page.inner_text("[data-stat=instances]")) >= 3
        assert page.locator("svg.chart rect").count() >= 1  # the received-per-day bars
        assert "HOME, PAGE" in page.inner_text("main")
        page.screenshot(path=tmp_path / "home.png", full_page=True)
        page.click("text=Sign out")
        page.wait_for_url("**/ui/login/")
        page.goto(node.url + "/ui/studies/")
        assert "/ui/login/" in page.url
        page.js_errors.check()
    finally:
        context.close()


def test_search_open_a_study_and_use_the_viewer(page, node, tmp_path):
    (study,) = upload(node, ct_series("view", 6, patient_name="VIEWER^VERA", study_description="CT THORAX",
                                      accession_number="ACC-VIEW", size=96)
                      + [multiframe("view", 3, patient_name="VIEWER^VERA", study_description="CT THORAX")])
    upload(node, ct_series("other", 2, patient_name="OTHER^OTTO", study_description="CT KNEE"))

    page.goto(node.url + "/ui/studies/")
    page.fill("input[name=patient_name]", "viewer")  # case-insensitive, prefix match
    page.click("form.search button[type=submit]")
    page.wait_for_url("**patient_name=viewer*")
    rows = page.locator("#study-table tbody tr")
    expect(rows).to_have_count(1, timeout=30_000)  # once the answer page is there, not the form's
    assert "VIEWER, VERA" in rows.first.inner_text()
    assert "CT THORAX" in rows.first.inner_text()
    page.fill("input[name=patient_name]", "")
    page.fill("input[name=accession]", "ACC-VIEW")
    page.click("form.search button[type=submit]")
    page.wait_for_url("**accession=ACC-VIEW*")
    expect(page.locator("#study-table tbody tr")).to_have_count(1, timeout=30_000)
    page.click("#study-table a.study-link")
    page.wait_for_url(f"**/ui/studies/{study}/")
    assert page.inner_text("h1") == "CT THORAX"
    assert page.inner_text("[data-field=patient-name]") == "VIEWER, VERA"

    # A thumbnail per series, rendered by the archive.
    assert page.locator(".series-card").count() == 2
    for index in range(2):
        assert shown(page, f".series-strip li:nth-child({index + 1}) img.thumb")["width"] > 0

    # The viewer draws the first slice with the file's window...
    first = drawn(page, 0)
    assert page.inner_text("#slice-label") == "1 / 6"
    assert "(file)" in page.inner_text("#window-label")
    # ...the next slice is another image...
    page.click("[data-act=next]")
    second = drawn(page, 1)
    assert page.inner_text("#slice-label") == "2 / 6"
    assert second["hash"] != first["hash"]
    # ...the wheel scrolls through the slices...
    page.hover("#viewport")
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => document.getElementById('slice-label').textContent === '5 / 6'")
    for _ in range(3):
        page.click("[data-act=prev]")
    soft = drawn(page, 1)
    # ...CT presets, and the lung window shows the same slice with other pixels (air turns grey).
    page.click("[data-preset=lung]")
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.window === '-600/1500'")
    lung = drawn(page, 1)
    assert lung["hash"] != soft["hash"] and lung["mean"] > soft["mean"]
    page.click("[data-preset=bone]")
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.window === '400/1800'")
    # Dragging on the image sets a window of its own.
    box = page.locator("#viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 40, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.window !== '400/1800'")
    assert page.get_attribute("[data-preset=bone]", "aria-pressed") == "false"
    # Zoom, invert, and the keyboard while the image has the focus.
    page.click("[data-act=zoom-in]")
    assert page.inner_text("#zoom-label") == "125%"
    before = drawn(page, 1)
    page.click("[data-act=invert]")
    page.wait_for_function(f"() => {CANVAS}(document.getElementById('viewer-canvas')).hash !== {before['hash']}")
    page.focus("#viewport")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("() => document.getElementById('slice-label').textContent === '3 / 6'")
    # The tags of the shown instance.
    page.click("#tags-panel summary")
    page.wait_for_selector("#tags-body table")
    name = page.locator('#tags-body tr[data-tag="0010,0010"]').first
    assert [c.strip() for c in name.locator(":scope > *").all_inner_texts()] == \
        ["0010,0010", "PN", "Patient's Name", "VIEWER^VERA"]
    # The filter keeps the matching rows only (by number, name, VR or value).
    page.fill("#tags-filter", "0008,0060")
    visible = page.locator("#tags-body tr[data-tag]:visible")
    assert visible.count() == 1 and "Modality" in visible.first.inner_text()
    page.fill("#tags-filter", "no such tag anywhere")
    assert page.is_visible("#tags-body .no-match")
    page.fill("#tags-filter", "")
    page.screenshot(path=tmp_path / "study.png", full_page=True)
    # A multi-frame instance: its frames are the slices of its series.
    page.click(".series-card[data-count='1']")
    page.wait_for_function("() => document.getElementById('slice-label').textContent === '1 / 3'")
    page.click("[data-act=next]")
    page.wait_for_function("() => document.getElementById('overlay-bl').textContent.includes('frame 2/3')")
    # Cine plays the frames at the chosen rate, round and round, until paused.
    page.fill("#cine-fps", "20")
    page.click("[data-act=cine]")
    page.wait_for_function("() => document.getElementById('overlay-bl').textContent.includes('frame 1/3')")
    page.wait_for_function("() => document.getElementById('overlay-bl').textContent.includes('frame 2/3')")
    page.click("[data-act=cine]")
    assert page.inner_text("[data-act=cine]") == "Play"


def test_names_are_found_as_typed_and_two_ticked_studies_download_as_one_zip(page, node, tmp_path):
    """What it must show: every search form finds DOE^JOHN and Müller^Jürgen; a bulk download of two studies."""
    john = ct_series("john", 2, patient_name="DOE^JOHN", patient_id="P-JOHN", study_description="CT JOHN")
    jurgen = ct_series("jurgen", 1, patient_name="MÜLLER^JÜRGEN", patient_id="P-JURGEN", study_description="CT JURGEN")
    upload(node, john + jurgen)
    for path in ("/ui/studies/", "/ui/patients/"):
        for typed, expected in (("Doe, John", "DOE, JOHN"), ("DOE^JOHN", "DOE, JOHN"), ("john doe", "DOE, JOHN"),
                                ("john", "DOE, JOHN"), ("muller", "MÜLLER, JÜRGEN"), ("Müller^Jürgen", "MÜLLER, JÜRGEN")):
            page.goto(node.url + path)
            page.fill("input[name=patient_name]", typed)
            page.click("form.search button[type=submit]")
            page.wait_for_url("**patient_name=*")
            rows = page.locator("table tbody tr")
            # The answer page may still be arriving when the click returns (a loaded machine).
            expect(rows, f"{path} {typed}").to_have_count(1, timeout=30_000)
            assert expected in rows.first.inner_text(), (path, typed)

    page.goto(node.url + "/ui/studies/?description=CT+J")
    assert page.is_disabled("#bulk-download")
    # Dark mode follows the system's preference.
    background = "() => getComputedStyle(document.body).backgroundColor"
    assert page.evaluate(background) == "rgb(244, 246, 248)"
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(background) == "rgb(15, 22, 29)"
    page.emulate_media(color_scheme="light")
    page.check("#select-all")
    assert page.inner_text("#bulk-count") == "2 studies ticked"
    with page.expect_download() as download:
        page.click("#bulk-download")
    download.value.save_as(tmp_path / "two.zip")
    with zipfile.ZipFile(tmp_path / "two.zip") as archive:
        assert sorted(md5(archive.read(n)) for n in archive.namelist()) == sorted(md5(f) for f in john + jurgen)


def test_upload_two_files_and_a_bad_one(page, node):
    good = ct_series("upload", 2, patient_name="UPLOAD^ULLA")
    page.goto(node.url + "/ui/upload/")
    page.set_input_files("#file-input", files=[
        {"name": "one.dcm", "mimeType": "application/dicom", "buffer": good[0]},
        {"name": "two.dcm", "mimeType": "application/dicom", "buffer": good[1]},
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"this is not a DICOM file"},
    ])
    page.wait_for_selector("#upload-progress[data-done=true]")
    summary = page.inner_text("#upload-summary")
    assert "2 stored" in summary and "0 already stored" in summary and "1 rejected" in summary
    rows = {row.locator("td").first.inner_text(): row for row in page.locator("#upload-rows tr").all()}
    assert rows["one.dcm"].get_attribute("data-status") == "stored"
    assert rows["notes.txt"].get_attribute("data-status") == "rejected"
    assert "not a DICOM Part 10 file" in rows["notes.txt"].inner_text()
    # The study they made is one click away, and a file sent again is recognised.
    assert page.locator("#upload-studies a").count() == 1
    page.set_input_files("#file-input", files=[{"name": "one-again.dcm", "mimeType": "application/dicom",
                                                 "buffer": good[0]}])
    page.wait_for_function("() => document.getElementById('upload-summary').textContent.includes('1 already stored')")
    page.wait_for_selector("#upload-progress[data-done=true]")
    status, found = servers.request_json(node.url + "/tools/find", method="POST",
                                         body=b'{"Level": "Instance", "Query": {"PatientID": "P-upload"}}')
    assert len(found) == 2


def test_upload_without_javascript_is_a_plain_form(browser, admin_state, node):
    files = ct_series("nojs", 1, patient_name="PLAIN^PAUL")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/first.dcm", files[0])
        z.writestr("a/broken.dcm", files[0][:300])
    context, page = open_context(browser, storage_state=admin_state, java_script_enabled=False)
    try:
        page.goto(node.url + "/ui/upload/")
        page.set_input_files("#file-input", files=[
            {"name": "batch.zip", "mimeType": "application/zip", "buffer": archive.getvalue()},
            {"name": "empty.dcm", "mimeType": "application/dicom", "buffer": b""},
        ])
        page.click("#upload-submit")
        summary = page.inner_text("#upload-summary-static")
        assert "1 stored" in summary and "2 rejected" in summary
        failures = page.inner_text("#upload-result table")
        assert "broken.dcm" in failures and "empty.dcm" in failures and "empty" in failures
    finally:
        context.close()


def test_prepare_a_zip_in_the_background_and_download_it(page, node, tmp_path):
    files = ct_series("zip", 4, patient_name="ZIP^ZOE")
    (study,) = upload(node, files)
    page.goto(f"{node.url}/ui/studies/{study}/")
    page.click("#prepare-zip")
    progress = page.wait_for_selector("#job-area .job-progress")
    assert progress.get_attribute("data-state") in ("Pending", "Running", "Success")
    assert page.locator("#job-area .progress").count() == 1
    page.wait_for_selector("#job-area a.download-link", timeout=30_000)
    assert page.get_attribute("#job-area .job-progress", "data-state") == "Success"
    assert page.get_attribute("#job-area .progress", "aria-valuenow") == "100"
    with page.expect_download() as download:
        page.click("#job-area a.download-link")
    data = (tmp_path / "study.zip")
    download.value.save_as(data)
    with zipfile.ZipFile(data) as archive:
        assert archive.testzip() is None
        members = [archive.read(name) for name in archive.namelist()]
    assert sorted(md5(m) for m in members) == sorted(md5(f) for f in files)
    # The same files, streamed at once by the "Download ZIP" link.
    response = page.request.get(node.url + page.get_attribute("#download-zip", "href"))
    assert response.status == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.body())) as archive:
        assert sorted(md5(archive.read(n)) for n in archive.namelist()) == sorted(md5(f) for f in files)
    # A DICOMDIR is prepared the same way.
    page.click("#prepare-media")
    page.wait_for_selector("#job-area a.download-link:has-text('DICOMDIR')", timeout=30_000)
    with page.expect_download() as download:
        page.click("#job-area a.download-link")
    download.value.save_as(tmp_path / "media.zip")
    with zipfile.ZipFile(tmp_path / "media.zip") as archive:
        assert "DICOMDIR" in archive.namelist() and len(archive.namelist()) == len(files) + 1
    # The jobs are in the jobs page too, finished, with their downloads.
    page.goto(node.url + "/ui/jobs/?type=Archive")
    job_row = page.locator("tr[data-state=Success]").first
    assert "ZIP archive" in job_row.inner_text()
    assert job_row.locator("a", has_text="Download").count() == 1


def test_add_a_modality_echo_it_and_send_a_study(page, node):
    remote = RemotePacs(servers.free_port())
    try:
        (study,) = upload(node, ct_series("send", 2, patient_name="SEND^SAM"))
        page.goto(node.url + "/ui/modalities/")
        page.click("#add-modality")
        page.fill("input[name=name]", "remote-scp")
        page.fill("input[name=aet]", "REMOTE")
        page.fill("input[name=host]", "127.0.0.1")
        page.fill("input[name=port]", "70000")
        page.click("#save-modality")  # refused, with the reason next to the field
        assert "65535" in page.inner_text("label.field.invalid")
        page.fill("input[name=port]", str(remote.port))
        page.click("#save-modality")
        page.wait_for_url("**/ui/modalities/")
        row = page.locator('tr[data-modality="remote-scp"]')
        assert "REMOTE" in row.inner_text()
        row.locator("button[data-action=echo]").click()
        page.wait_for_selector('tr[data-modality="remote-scp"] .test-result')
        assert "Echo succeeded" in row.locator(".test-result").inner_text()

        # A modality nobody listens for fails clearly.
        servers.request_json(node.url + "/modalities/nobody", method="PUT",
                             body=f'{{"AET": "NOBODY", "Host": "127.0.0.1", "Port": {servers.free_port()}}}'.encode())
        page.reload()
        dead = page.locator('tr[data-modality="nobody"]')
        dead.locator("button[data-action=echo]").click()
        page.wait_for_selector('tr[data-modality="nobody"] .test-result')
        assert "Echo failed" in dead.locator(".test-result").inner_text()

        # Send the study there: a job whose progress ends in success.
        page.goto(f"{node.url}/ui/studies/{study}/")
        page.select_option("#send-target", "modality:remote-scp")
        page.click("#send-button")
        page.wait_for_selector("#job-area .job-progress[data-state=Success]", timeout=30_000)
        assert len(remote.received) == 2
    finally:
        remote.stop()


def test_query_retrieve_from_a_second_pacsweb_and_a_pynetdicom_pacs(page, node, server_factory, listener_factory):
    """What it must show: search, retrieve two studies, see them arrive."""
    second = server_factory("second")
    listener = listener_factory(second, ae_title="SECOND")
    far = ct_series("far-1", 2, patient_name="FAR^AWAY", patient_id="P-FAR", study_description="CT FAR ONE") + \
        ct_series("far-2", 1, patient_name="FAR^AWAY", patient_id="P-FAR", study_description="CT FAR TWO")
    upload(second, far)
    # The second archive lets this one (AE PACSWEB on loopback) query and retrieve.
    assert servers.request_json(second.url + "/modalities/first", method="PUT", body=json.dumps(
        {"AET": "PACSWEB", "Host": "127.0.0.1", "Port": 104}).encode())[0] == 200
    remote = RemotePacs(servers.free_port(), aet="SMALLPACS")
    try:
        remote.held = [pydicom.dcmread(io.BytesIO(d)) for d in ct_series("small", 2, patient_id="P-SMALL")]
        for name, aet, port in (("second", "SECOND", listener.port), ("small", "SMALLPACS", remote.port)):
            assert servers.request_json(node.url + f"/modalities/{name}", method="PUT", body=json.dumps(
                {"AET": aet, "Host": "127.0.0.1", "Port": port}).encode())[0] == 200

        def search(source, **fields):
            page.goto(node.url + "/ui/retrieve/")
            page.select_option("select[name=source]", source)
            for field, value in fields.items():
                page.fill(f"input[name={field}]", value)
            page.click("#remote-search-button")
            page.wait_for_selector("#remote-answers")
            return page.locator("#remote-table tbody tr")

        def retrieved(rows, count):
            page.check("#select-all-remote")
            page.select_option("#retrieve-method", "C-GET")
            page.click("#retrieve-button")
            page.wait_for_selector("#retrieve-job .job-progress[data-state=Success]", timeout=60_000)
            assert rows.count() == count

        rows = search("second", patient_name="away far")
        assert rows.count() == 2 and "FAR, AWAY" in rows.first.inner_text()
        assert page.locator('#remote-table tr[data-here="no"]').count() == 2
        retrieved(rows, 2)
        rows = search("second", patient_name="away far")
        assert page.locator('#remote-table tr[data-here="yes"]').count() == 2  # arrived
        page.click('#remote-table tr[data-here="yes"] a.badge >> nth=0')
        assert "FAR, AWAY" in page.inner_text("[data-field=patient-name]")

        rows = search("small", patient_id="P-SMALL")
        assert rows.count() == 1 and page.locator('#remote-table tr[data-here="no"]').count() == 1
        retrieved(rows, 1)
        search("small", patient_id="P-SMALL")
        assert page.locator('#remote-table tr[data-here="yes"]').count() == 1
    finally:
        remote.stop()


def test_peers_are_added_tested_edited_and_deleted(page, node):
    page.goto(node.url + "/ui/peers/")
    assert "No peer yet" in page.inner_text("main")
    page.click("#add-peer")
    page.fill("input[name=name]", "self")
    page.fill("input[name=url]", "ftp://nowhere")
    page.click("#save-peer")
    assert "http://" in page.inner_text("form .alert.error")  # refused with the reason
    page.fill("input[name=url]", node.url)  # this archive is its own peer
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", servers.ADMIN_PASSWORD)
    page.click("#save-peer")
    page.wait_for_url("**/ui/peers/")
    row = page.locator('tr[data-peer="self"]')
    assert node.url in row.inner_text()
    row.locator("button[data-action=test]").click()
    page.wait_for_selector('tr[data-peer="self"] .test-result')
    assert "Reached pacsweb" in row.locator(".test-result").inner_text()
    # Editing keeps the password unless a new one is typed.
    row.locator("a", has_text="Edit").click()
    page.fill("input[name=username]", "nobody")
    page.click("#save-peer")
    page.wait_for_url("**/ui/peers/")
    row.locator("button[data-action=test]").click()
    page.wait_for_selector('tr[data-peer="self"] .test-result.failed')
    assert "refused our credentials" in row.locator(".test-result").inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    row.locator("button[data-action=delete]").click()
    page.wait_for_url("**/ui/peers/")
    assert "Peer self deleted" in page.inner_text(".messages")
    assert servers.request_json(node.url + "/peers") == (200, [])


def test_delete_a_study_and_a_viewer_cannot(browser, page, node):
    (kept,) = upload(node, ct_series("kept", 2, patient_name="KEPT^KARL"))
    (doomed,) = upload(node, ct_series("doomed", 3, patient_name="GONE^GRETA", study_description="CT DOOMED"))
    # An administrator creates the viewer's account on the Users page.
    page.goto(node.url + "/ui/users/")
    page.fill("#user-form input[name=username]", "vic")
    page.select_option("#user-form select[name=role]", "viewer")
    page.fill("#user-form input[name=password]", "vic-password")
    page.fill("#user-form input[name=password2]", "vic-password")
    page.click("#create-user")
    assert "Created the viewer account vic" in page.inner_text(".messages")
    assert page.locator('tr[data-user="vic"] select[name=role]').input_value() == "viewer"

    context, viewer = open_context(browser)
    try:
        sign_in(viewer, node.url, "vic", "vic-password")
        viewer.goto(f"{node.url}/ui/studies/{doomed}/")
        assert viewer.locator("#delete-study").count() == 0  # no delete, no send for a viewer
        assert viewer.locator("#send-button").count() == 0
        assert viewer.locator("#prepare-zip").count() == 1  # viewers may prepare archives
        assert viewer.locator("nav.mainnav a", has_text="Upload").count() == 0
        # The confirmation page and the form posted anyway are refused by the server.
        response = viewer.goto(f"{node.url}/ui/studies/{doomed}/delete")
        assert response.status == 403
        assert "admin role" in viewer.inner_text("main")
        viewer.goto(f"{node.url}/ui/studies/{doomed}/")
        with viewer.expect_navigation() as navigation:
            viewer.evaluate("""(url) => {
                const form = document.createElement('form');
                form.method = 'post'; form.action = url;
                const token = document.querySelector('input[name=csrfmiddlewaretoken]').cloneNode();
                form.appendChild(token); document.body.appendChild(form); form.submit();
            }""", f"/ui/studies/{doomed}/delete")
        assert navigation.value.status == 403
        response = viewer.goto(f"{node.url}/ui/upload/")
        assert response.status == 403
        viewer.js_errors.check()
    finally:
        context.close()
    assert servers.request_json(f"{node.url}/studies/{doomed}")[0] == 200

    page.goto(f"{node.url}/ui/studies/{doomed}/")
    page.click("#delete-study")
    page.wait_for_url(f"**/ui/studies/{doomed}/delete")
    assert page.inner_text("[data-field=patient-name]").startswith("GONE, GRETA")
    assert page.inner_text("[data-field=study-description]") == "CT DOOMED"
    assert page.inner_text("[data-field=study-date]") == "2026-01-15"
    assert page.inner_text("[data-field=instances]").startswith("3 instances")
    page.click("#confirm-delete")
    page.wait_for_url("**/ui/studies/")
    assert "Deleted the study" in page.inner_text(".messages")
    assert servers.request_json(f"{node.url}/studies/{doomed}")[0] == 404
    assert servers.request_json(f"{node.url}/studies/{kept}")[0] == 200
    response = page.goto(f"{node.url}/ui/studies/{doomed}/")
    assert response.status == 404
    assert "not in the archive" in page.inner_text("main")


def test_jobs_page_shows_a_failed_send_and_retries_it(page, node, tmp_path):
    (study,) = upload(node, ct_series("fail", 1, patient_name="FAIL^FRED"))
    servers.request_json(node.url + "/modalities/offline", method="PUT",
                         body=f'{{"AET": "OFFLINE", "Host": "127.0.0.1", "Port": {servers.free_port()}}}'.encode())
    status, job = servers.request_json(node.url + "/modalities/offline/store", method="POST",
                                       body=f'{{"Resources": ["{study}"], "Asynchronous": true}}'.encode())
    assert status == 200, job
    page.goto(node.url + "/ui/jobs/?type=DicomModalityStore")
    row = page.locator(f'tr[data-job="{job["ID"]}"]')
    page.wait_for_selector(f'tr[data-job="{job["ID"]}"][data-state=Failure]', timeout=30_000)
    assert "OFFLINE" in row.inner_text() and "Send to modality" in row.inner_text()
    assert "cannot open an association" in row.inner_text()
    row.locator("button[data-action=resubmit]").click()
    page.wait_for_url("**/ui/jobs/?type=DicomModalityStore")
    assert "Submitted again" in page.inner_text(".messages")
    page.wait_for_selector(f'tr[data-job="{job["ID"]}"][data-state=Failure]', timeout=30_000)
    page.select_option("select[name=state]", "Success")
    page.click("form.filters button[type=submit]")
    assert page.locator(f'tr[data-job="{job["ID"]}"]').count() == 0
    page.goto(node.url + "/ui/jobs/")
    page.screenshot(path=tmp_path / "jobs.png", full_page=True)


def test_changes_are_listed_filtered_and_lead_to_the_study(page, node):
    (study,) = upload(node, ct_series("changes", 1, patient_name="CHANGE^CLARA"))
    page.goto(node.url + "/ui/changes/?type=NewStudy")
    types = page.locator("#change-table tbody td:nth-child(2)").all_inner_texts()
    assert types and set(types) == {"NewStudy"}
    page.click(f'#change-table a[href="/ui/open/study/{study}"]')
    page.wait_for_url(f"**/ui/studies/{study}/")


def test_cluster_page_shows_two_nodes_and_drains_one(browser, node, server_factory, tmp_path):
    first = node  # started with PACS_NODE_NAME="node-a"; node-b joins its cluster
    second = server_factory("node-b", join=first, workers=1, PACS_NODE_NAME="node-b", PACS_NODE_HEARTBEAT=1)
    context, page = open_context(browser)
    try:
        # Signed in on node-b; the page of any node shows the whole cluster.
        sign_in(page, second.url, "admin", servers.ADMIN_PASSWORD)
        page.goto(second.url + "/ui/cluster/")
        # The page polls the registry: both nodes show once their web processes have beaten.
        page.wait_for_selector('[data-node="node-a"][data-status=up]', timeout=20_000)
        page.wait_for_selector('[data-node="node-b"][data-status=up]', timeout=20_000)
        node_b = page.locator('[data-node="node-b"]')
        assert "0.1.0" in node_b.inner_text()
        page.screenshot(path=tmp_path / "cluster.png", full_page=True)
        page.on("dialog", lambda dialog: dialog.accept())
        node_b.locator("button[data-action=drain]").click()
        page.wait_for_selector('[data-node="node-b"] button[data-action=undrain]')
        assert "draining" in page.inner_text('[data-node="node-b"]')
        assert "node-b is draining" in page.inner_text(".warnings")
        nodes = {n["Name"]: n for n in servers.request_json(first.url + "/cluster/nodes")[1]}
        assert nodes["node-b"]["Draining"] is True and nodes["node-a"]["Draining"] is False
        assert servers.request(second.url + "/readyz", auth=False)[0] == 503  # the load balancer stops using it
        page.locator('[data-node="node-b"] button[data-action=undrain]').click()
        page.wait_for_selector('[data-node="node-b"] button[data-action=drain]')
        nodes = {n["Name"]: n for n in servers.request_json(first.url + "/cluster/nodes")[1]}
        assert nodes["node-b"]["Draining"] is False
        assert servers.request(second.url + "/readyz", auth=False)[0] == 200
        page.js_errors.check()
    finally:
        context.close()


# --- the viewer that keeps up: each frame fetched once, windowing in the browser ---


def image(tag, size, values, **extra):
    """One instance of `size` × `size` 16-bit pixels with the given values."""
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_id=f"P-{tag}", study_uid=uid(tag, "study"),
                                                  series_uid=uid(tag, "series"), sop_uid=uid(tag, "sop"),
                                                  rows=size, columns=size, **extra)))
    ds.PixelData = values.astype(np.uint16).tobytes()
    for keyword in ("WindowCenter", "WindowWidth"):
        del ds[keyword]
    ds.RescaleIntercept = 0
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def window_of(page):
    center, width = page.get_attribute("#viewer-canvas", "data-window").split("/")
    return float(center), float(width)


def test_window_changes_on_a_large_cr_ask_nothing_of_the_server(page, node):
    """What it must show: on a 2,000×2,000 16-bit CR, 20 window changes issue no request after
    the first frame; a 135-pixel drag does not collapse a wide window."""
    y, x = np.mgrid[0:2000, 0:2000]
    (study,) = upload(node, [image("cr", 2000, (x + y) * 7.5, modality="CR", BitsStored=16, HighBit=15)])
    page.goto(f"{node.url}/ui/studies/{study}/")
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.index === '0'", timeout=60_000)
    assert page.locator("[data-preset=lung]").count() == 0  # CT presets are for CT only
    assert page.locator("[data-preset=full-range]").count() == 1
    center, width = window_of(page)
    assert width > 29_000  # no window in the file: the frame's whole range
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.locator("#viewport").scroll_into_view_if_needed()
    box = page.locator("#viewport").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for change in range(20):
        page.mouse.move(*middle)
        page.mouse.down()
        page.mouse.move(middle[0] + (-135 if change == 0 else 10), middle[1] + 5, steps=3)
        page.mouse.up()
        if change == 0:
            # The drag moves by the frame's range, not by the current width: W 30000 stays wide.
            assert 20_000 < window_of(page)[1] < 24_000
    assert window_of(page) != (center, width)
    assert requests == []


def test_a_100_slice_series_scrolls_with_each_slice_fetched_once(page, node):
    files = ct_series("hundred", 100, size=32)
    (study,) = upload(node, files)
    pixels = []
    page.on("request", lambda request: pixels.append(request.url) if "/pixels" in request.url else None)
    page.goto(f"{node.url}/ui/studies/{study}/")
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.index === '0'")
    page.focus("#viewport")
    for key, last in (("ArrowDown", 99), ("ArrowUp", 0)):
        for _ in range(99):
            page.keyboard.press(key)
        page.wait_for_function(f"() => document.getElementById('viewer-canvas').dataset.index === '{last}'")
    assert len(pixels) == 100 and len(set(pixels)) == 100
    # Viewing it once is one read of the study in the audit trail.
    status, reads = servers.request_json(node.url + f"/audit?action=read&resource={quote(study)}")
    assert status == 200 and len(reads) == 1, json.dumps(reads)[:500]


def test_a_length_reads_the_distance_in_millimetres(page, node):
    """What it must show: a length across a known distance reads within 1 % of it."""
    y, x = np.mgrid[0:200, 0:200]
    (study,) = upload(node, [image("ruler", 200, (x * 10) + 100, PixelSpacing=[0.4, 0.7])])
    page.goto(f"{node.url}/ui/studies/{study}/")
    page.wait_for_function("() => document.getElementById('viewer-canvas').dataset.index === '0'")
    page.click("[data-tool=length]")
    page.locator("#viewport").scroll_into_view_if_needed()
    start = page.evaluate("() => window.pacswebViewer.imageToClient(20, 20)")
    end = page.evaluate("() => window.pacswebViewer.imageToClient(180, 120)")
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move(end["x"], end["y"], steps=5)
    page.mouse.up()
    text = page.inner_text("#measurements li[data-kind=length]")
    expected = ((160 * 0.7) ** 2 + (100 * 0.4) ** 2) ** 0.5  # columns × column spacing, rows × row spacing
    assert text.startswith("Length ") and text.endswith(" mm")
    assert abs(float(text.split()[1]) - expected) / expected < 0.01
    # An angle: drag the first arm to the vertex, click the end of the second. In millimetres
    # (columns 0.7 mm, rows 0.4 mm) the arms (-35, 0) and (-35, 28) mm meet at 38.66°.
    page.click("[data-tool=angle]")
    start, vertex, end = (page.evaluate(f"() => window.pacswebViewer.imageToClient({x}, {y})")
                          for x, y in ((50, 50), (100, 50), (50, 120)))
    page.mouse.move(start["x"], start["y"])
    page.mouse.down()
    page.mouse.move(vertex["x"], vertex["y"], steps=3)
    page.mouse.up()
    page.mouse.click(end["x"], end["y"])
    angle = page.inner_text("#measurements li[data-kind=angle]")
    assert abs(float(angle.split()[1].rstrip("°")) - 38.66) < 0.4
    # Orientation markers from ImageOrientationPatient (axial): R on the left, A on top.
    assert (page.inner_text("#marker-left"), page.inner_text("#marker-top")) == ("R", "A")

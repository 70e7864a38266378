"""The editing dialogs and the bulk bar in a real browser (Debian's Chromium): label a
study, anonymize it from its page and follow the job to the result, bulk-label from the
study list and find the studies by label."""

from tests import servers
from tests.console.conftest import upload
from tests.console.phantom import ct_series


def test_label_anonymize_and_open_the_result(page, node):
    (study,) = upload(node, ct_series("browser-anon", 3, patient_name="BROWSER^ANON"))
    page.goto(f"{node.url}/ui/studies/{study}/")
    page.fill("#label-name", "trial-9")
    page.click("#add-label")
    page.wait_for_selector("#labels >> text=trial-9")
    page.click("#anonymize-study")
    preview = page.inner_text("#anonymize-preview")
    assert "BROWSER^ANON" in preview and "replaced by a generated name" in preview
    page.fill("#patient_name", "TRIAL^001")
    page.click("#edit-submit")
    page.wait_for_selector("#edit-result", timeout=60_000)  # the progress fragment follows the job
    page.click("#edit-result")
    assert "TRIAL, 001" in page.inner_text("main") or "TRIAL^001" in page.inner_text("main")
    status, source = servers.request_json(f"{node.url}/studies/{study}")
    assert status == 200 and source["Labels"] == ["trial-9"]
    page.js_errors.check()


def test_bulk_label_from_the_study_list(page, node):
    studies = [upload(node, ct_series(f"browser-bulk-{n}", 1, patient_name=f"BULK^N{n}"))[0] for n in range(2)]
    page.goto(f"{node.url}/ui/studies/?patient_name=BULK")
    for public_id in studies:
        page.check(f"input[name=study][value='{public_id}']")
    page.fill("#bulk-label", "batch-b")
    page.click("#bulk-label-button")
    page.wait_for_selector(".alert >> text=Labelled 2 studies")
    page.goto(f"{node.url}/ui/studies/?label=batch-b")
    assert page.locator("input[name=study]").count() == 2
    assert all(servers.request_json(f"{node.url}/studies/{s}")[1]["Labels"] == ["batch-b"] for s in studies)
    page.js_errors.check()

"""The console's tests: signed-in clients of each role for the views in process
(Django's test client); for the browser tests, a real node (gunicorn, PostgreSQL,
Redis, a job worker) driven by Debian's Chromium through Playwright's sync API.

No browser is ever downloaded: Playwright launches /usr/bin/chromium (the test
harness installs Debian's package). The node and the browser are shared by the
tests of a module (each test makes its own data and its own browser context), so
the module runs in well under two minutes.
"""

import io
import os
import shutil
import zipfile

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from playwright.sync_api import sync_playwright

from tests import servers

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1366, "height": 900}


@pytest.fixture
def as_role(db, django_user_model, storage_dir):
    """as_role("viewer") → a Client signed in as a user of that role (None: no role)."""

    def make(role):
        user = django_user_model.objects.create_user(f"{role or 'nobody'}-user", password="pw")
        if role:
            user.groups.add(Group.objects.get(name=role))
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def admin(as_role):
    return as_role("admin")


def launch_chromium(playwright):
    executable = shutil.which("chromium") or CHROMIUM
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") or os.path.exists(CHROMIUM)):
        pytest.fail("Debian's chromium is not installed: run the suite with `make test`, which installs it")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node (web server and job worker) shared by the module's tests, as
    server_factory and worker_factory start them."""
    # One web process: the Basic credentials of the REST calls are checked
    # (a deliberate ~1 s of PBKDF2 here) once a minute rather than once per process.
    server = servers.Server(tmp_path_factory.mktemp("console") / "node", workers=1, threads=8,
                            PACS_NODE_NAME="node-a", PACS_NODE_HEARTBEAT=1)
    worker = servers.Worker(server)
    yield server
    worker.stop()
    server.stop()


@pytest.fixture(scope="module")
def admin_state(browser, node):
    """A signed-in admin session, reused by every test's browser context."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    sign_in(page, node.url, "admin", servers.ADMIN_PASSWORD)
    state = context.storage_state()
    context.close()
    return state


class PageErrors(list):
    def check(self):
        assert not self, f"the page raised JavaScript errors: {list(self)}"


def open_context(browser, **options):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    return context, page


@pytest.fixture
def page(browser, admin_state):
    """A browser page signed in as admin; JavaScript errors fail the test."""
    context, page = open_context(browser, storage_state=admin_state)
    yield page
    errors = page.js_errors
    context.close()
    errors.check()


def sign_in(page, base_url, username, password):
    page.goto(base_url + "/ui/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("section.login button[type=submit]")
    page.wait_for_url(base_url + "/ui/")


def make_user(server, username, password, role):
    """A user in the role's group, created with the node's own settings."""
    code = ("from django.contrib.auth.models import Group, User; "
            f"u = User.objects.create_user({username!r}, password={password!r}); "
            f"u.groups.add(Group.objects.get(name={role!r}))")
    servers.manage("shell", "-c", code, env=server.env)


def upload(server, files):
    """Store the files through POST /instances (one ZIP, one request); the ids of
    their studies, in order of first appearance."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for n, data in enumerate(files):
            archive.writestr(f"{n:04d}.dcm", data)
    status, answers = servers.request_json(server.url + "/instances", method="POST", body=buffer.getvalue(),
                                           headers={"Content-Type": "application/zip"})
    assert status == 200, answers
    studies = []
    for answer in answers:
        if answer["ParentStudy"] not in studies:
            studies.append(answer["ParentStudy"])
    return studies

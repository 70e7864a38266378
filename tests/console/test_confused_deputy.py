"""Browsers are not a confused deputy: a page of another site cannot make a browser
that cached the administrator's HTTP Basic credentials write for it; scripts with
the same credentials keep working; the console has a Content-Security-Policy; the
Host header is checked."""

import http.server
import socket
import threading

import pytest

from tests import servers
from tests.console.conftest import VIEWPORT
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    server = servers.Server(tmp_path_factory.mktemp("deputy") / "node", workers=1, threads=4,
                            PACS_NODE_NAME="node-d", PACS_NODE_HEARTBEAT=1)
    yield server
    server.stop()


@pytest.fixture
def attacker_site(node):
    """A page on another origin that posts a form to the node as soon as it loads."""
    page = (f'<html><body><form id="f" method="post" action="{node.url}/cluster/nodes/node-d/drain">'
            '<input name="x" value="1"></form><script>document.getElementById("f").submit()</script>'
            '</body></html>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    # "localhost" is another site than "127.0.0.1" for the browser.
    yield f"http://localhost:{site.server_address[1]}/"
    site.shutdown()


def draining(node):
    nodes = servers.request_json(node.url + "/cluster/nodes")[1]
    return [n["Draining"] for n in nodes if n["Name"] == "node-d"]


def test_a_cross_site_form_cannot_use_cached_basic_credentials_but_scripts_can(browser, node, attacker_site):
    wait_for(lambda: draining(node) == [False], what="the node registered")
    context = browser.new_context(viewport=VIEWPORT, http_credentials={"username": "admin",
                                                                      "password": servers.ADMIN_PASSWORD})
    try:
        page = context.new_page()
        # The browser holds the admin's credentials: it reads with them, as after a 401 prompt.
        assert page.goto(node.url + "/statistics").status == 200
        with page.expect_response(lambda r: "/drain" in r.url and r.status != 401) as posted:
            page.goto(attacker_site)
        response = posted.value
        assert response.status == 403, response.status
        assert "cross-site request refused" in response.text()
    finally:
        context.close()
    assert draining(node) == [False]

    # A script with the same credentials (as curl -u: no Origin, no Sec-Fetch-Site) still writes.
    assert servers.request(node.url + "/cluster/nodes/node-d/drain", method="POST", body=b"")[0] == 200
    assert draining(node) == [True]
    assert servers.request(node.url + "/cluster/nodes/node-d/undrain", method="POST", body=b"",
                           headers={"Origin": node.url})[0] == 200  # its own origin is fine too
    assert draining(node) == [False]
    status, _, body = servers.request(node.url + "/cluster/nodes/node-d/drain", method="POST", body=b"",
                                      headers={"Origin": "https://evil.example"})
    assert status == 403 and draining(node) == [False]


def test_the_console_has_a_content_security_policy(node):
    status, headers, _ = servers.request(node.url + "/ui/login/", auth=False)
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy


def _raw_get(node, host):
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as connection:
        connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_the_host_header_must_name_this_machine(node):
    assert _raw_get(node, f"127.0.0.1:{node.port}") == 200
    assert _raw_get(node, f"localhost:{node.port}") == 200
    assert _raw_get(node, f"{socket.gethostname()}:{node.port}") == 200
    # A name an attacker controls that resolves here (DNS rebinding) is refused.
    assert _raw_get(node, "attacker.example:80") == 400
    assert _raw_get(node, "203.0.113.7") == 400

"""The least a web answer costs in Python here: gunicorn with pacsweb's worker and
configuration (deploy/gunicorn.conf.py: its event loop, threads and access log),
answering one fixed JSON body without Django, a database or a credential check.

benchmarks.reads measures it beside the reads, with the same client, as the floor
under which no read of pacsweb's web stack can go.
"""

BODY = b'{"ID": "floor", "MainDicomTags": {}}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)  # every path, /healthz too (what tests.servers waits for)
    return [BODY]

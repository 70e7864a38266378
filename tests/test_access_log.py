"""The web server's access log (pacsweb.webworker.AccessLogger) writes what
gunicorn's own logger writes, for the deployment's format and others."""

import datetime
import logging
from types import SimpleNamespace

import pytest
from gunicorn import glogging
from gunicorn.config import Config

from pacsweb.webworker import AccessLogger

FORMATS = [
    None,  # the deployment's (deploy/gunicorn.conf.py)
    Config().access_log_format,  # gunicorn's default
    '%(h)s %({X-Forwarded-For}i)s %({content-type}o)s %({remote_addr}e)s %(D)s %(L)s %(m)s %(U)s %(q)s',
    '%(h)s %(nonsense)s %(s)s',  # an atom neither knows: '-' from both
]


def _lines(logger_class, form, monkeypatch):
    config = Config()
    if form is None:
        namespace = {"__file__": "deploy/gunicorn.conf.py"}
        exec(open("deploy/gunicorn.conf.py").read(), namespace)
        form = namespace["access_log_format"]
    config.set("access_log_format", form)
    config.set("accesslog", "-")
    logger = logger_class(config)
    monkeypatch.setattr(logger, "now", lambda: "[06/Dec/2026:08:00:00 +0000]")
    written = []
    logger.access_log = SimpleNamespace(info=lambda message, atoms: written.append(message % atoms))
    environ = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "POST", "RAW_URI": "/instances?x=1",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/instances", "QUERY_STRING": "x=1",
               "HTTP_USER_AGENT": 'curl/8 "quoted"', "HTTP_AUTHORIZATION": "Basic YWxpY2U6c2VjcmV0",
               "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    request = SimpleNamespace(headers=[("X-FORWARDED-FOR", "203.0.113.7"), ("USER-AGENT", 'curl/8 "quoted"')])
    response = SimpleNamespace(status="200 OK", sent=1234, headers=[("Content-Type", "application/json")])
    logger.access(response, request, environ, datetime.timedelta(seconds=1, microseconds=2500))
    return written


@pytest.mark.parametrize("form", FORMATS)
def test_the_access_log_line_is_gunicorns(form, monkeypatch):
    ours = _lines(AccessLogger, form, monkeypatch)
    assert ours == _lines(glogging.Logger, form, monkeypatch)
    assert len(ours) == 1 and "10.1.2.3" in ours[0]
    logging.getLogger("gunicorn.access").handlers.clear()

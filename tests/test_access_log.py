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


@pytest.fixture
def bare_access_log():
    """gunicorn's access logger, its handlers and filters restored after the test."""
    log = logging.getLogger("gunicorn.access")
    kept = log.handlers[:], log.filters[:]
    log.handlers.clear()
    log.filters.clear()
    yield log
    for handler in log.handlers:
        handler.close()
    log.handlers[:], log.filters[:] = kept


@pytest.mark.parametrize("form", FORMATS)
def test_the_line_written_to_the_log_file_is_gunicorns(form, monkeypatch, tmp_path, bare_access_log):
    """The deployment's set-up (gunicorn's own handler on a file) is written directly,
    and the file holds the lines gunicorn's logger writes."""

    def write(logger_class, path):
        config = Config()
        if form is not None:
            config.set("access_log_format", form)
        config.set("accesslog", str(path))
        logger = logger_class(config)
        # pytest's log capture puts its handlers on the logger as it runs a test: a worker has only gunicorn's.
        bare_access_log.handlers[:] = [h for h in bare_access_log.handlers if getattr(h, "_gunicorn", False)]
        monkeypatch.setattr(logger, "now", lambda: "[06/Dec/2026:08:00:00 +0000]")
        environ = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "GET", "RAW_URI": "/studies/x",
                   "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/studies/x", "QUERY_STRING": "",
                   "HTTP_USER_AGENT": "pyorthanc", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
        request = SimpleNamespace(headers=[("X-FORWARDED-FOR", "203.0.113.7")])
        response = SimpleNamespace(status="200 OK", sent=88, headers=[("Content-Type", "application/json")])
        for _ in range(2):
            logger.access(response, request, environ, datetime.timedelta(microseconds=900))
        return logger

    ours = write(AccessLogger, tmp_path / "ours.log")
    assert ours._direct_handler() is not None  # the line went straight to the file
    # An operator's filter on the log sends the line through logging again.
    bare_access_log.addFilter(lambda record: True)
    assert ours._direct_handler() is None
    bare_access_log.filters.clear()
    write(glogging.Logger, tmp_path / "gunicorns.log")
    written = (tmp_path / "ours.log").read_text()
    assert written == (tmp_path / "gunicorns.log").read_text()
    assert written.count("\n") == 2 and "10.1.2.3" in written


def test_a_closed_log_file_is_opened_again_for_the_next_line(tmp_path, bare_access_log):
    """A file handler's stream is None once closed (a reopen, a fork) or before its first
    record: the line goes through logging, which opens the file again, and the next ones
    are written directly."""
    config = Config()
    config.set("accesslog", str(tmp_path / "access.log"))
    logger = AccessLogger(config)
    bare_access_log.handlers[:] = [h for h in bare_access_log.handlers if getattr(h, "_gunicorn", False)]
    environ = {"REMOTE_ADDR": "10.1.2.3", "REQUEST_METHOD": "GET", "RAW_URI": "/system",
               "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/system", "QUERY_STRING": ""}
    request = SimpleNamespace(headers=[])
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    handler = logger._direct_handler()
    handler.close()
    assert handler.stream is None
    for _ in range(3):
        logger.access(response, request, environ, datetime.timedelta(microseconds=500))
    assert handler.stream is not None
    assert (tmp_path / "access.log").read_text().count('"GET /system HTTP/1.1" 200 10') == 3

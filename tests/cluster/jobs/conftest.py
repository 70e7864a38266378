"""Jobs, archives, deletions and sends, driven through REST against real server,
RQ worker and housekeeper processes sharing PostgreSQL and Redis."""

import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

from tests import servers
from tests.dicomgen import make_instance, uid
from tests.waiting import wait_for


def md5(data):
    return hashlib.md5(data).hexdigest()


def study_files(tag, count, series=1, **kwargs):
    """Part 10 files of one study, `count` instances spread over `series` series."""
    study = uid(tag, "study")
    return [make_instance(patient_id=f"P-{tag}", study_uid=study, series_uid=uid(tag, "series", n % series),
                          sop_uid=uid(tag, "sop", n), instance_number=n + 1, **kwargs)
            for n in range(count)]


def upload(server, files):
    """Store the files in ZIPs of up to 500, two requests at a time (a server's two
    workers ingest in parallel); the ids of their studies."""

    def post(start):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for n, data in enumerate(files[start:start + 500]):
                archive.writestr(f"{n:05d}.dcm", data)
        status, answer = servers.request_json(server.url + "/instances", method="POST", body=buffer.getvalue(),
                                              headers={"Content-Type": "application/zip"}, timeout=600)
        assert status == 200, answer
        return answer if isinstance(answer, list) else [answer]

    with ThreadPoolExecutor(2) as pool:
        answers = [a for part in pool.map(post, range(0, len(files), 500)) for a in part]
    return sorted({a["ParentStudy"] for a in answers})


def wait_job(server, job_id, states=("Success", "Failure", "Cancelled"), timeout=60):
    """The job's description once its State is one of `states`."""
    last = {}

    def reached():
        status, job = servers.request_json(f"{server.url}/jobs/{job_id}")
        assert status == 200, job
        last["job"] = job
        return job if job["State"] in states else None

    try:
        return wait_for(reached, timeout=timeout, what=f"job {job_id} in state {' or '.join(states)}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {last.get('job')}") from None


def zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}

"""DICOMweb frames benchmark: frames per second to OHIF's request pattern, pacsweb beside Orthanc's DICOMweb plugin.

    .venv/bin/python -m benchmarks.dicomweb                       # 100 JPEG 2000 512x512 CT instances
    .venv/bin/python -m benchmarks.dicomweb --instances 20 --targets pacsweb-postgres orthanc-sqlite

Each target is started fresh and given the same instances (512 x 512 16-bit CT,
stored as JPEG 2000 lossless, each with its own UIDs). Then CONCURRENCY clients,
each on one keep-alive connection, ask every instance's frame 1 as OHIF does:

1. stored: `multipart/related; type="application/octet-stream"; transfer-syntax=*`,
   the stored JPEG 2000 codestream (what OHIF asks, decoding in the browser);
2. transcoded: `transfer-syntax=1.2.840.10008.1.2.1`, decoded by the server.

Every answer is checked (status 200, a multipart body of the expected size range)
and figures are frames per second and the median latency. Everything runs on this
machine: figures compare targets with each other, not with a deployment. Exits 1
when a request failed.
"""

import argparse
import io
import statistics
import sys
import threading
import time

import pydicom

from archive import transcode
from benchmarks import ingest, rest
from tests.dicomgen import make_instance, uid

TARGETS = ("pacsweb-postgres", "orthanc-sqlite")
CONCURRENCY = 4
PATTERNS = {
    "stored": 'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    "transcoded": 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--workers", type=int, default=2, help="pacsweb's gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="pacsweb's gunicorn threads per worker")
    args = parser.parse_args()
    print(f"{args.instances} JPEG 2000 lossless 512x512 CT instances, {CONCURRENCY} clients", flush=True)
    files = instances(args.instances)
    failed = False
    with ingest.postgres_server(args.targets) as postgres_url:
        for name in args.targets:
            with rest.start(name, args, postgres_url) as target:
                for data in files:
                    conn = target.connection()
                    conn.request("POST", "/instances", body=data[1], headers={
                        "Authorization": target.auth_header, "Content-Type": "application/dicom"})
                    response = conn.getresponse()
                    response.read()
                    conn.close()
                    if response.status != 200:
                        print(f"{name}: storing failed with {response.status}")
                        failed = True
                for pattern, accept in PATTERNS.items():
                    rate, median, errors = measure(target, [path for path, _ in files], accept)
                    failed |= bool(errors)
                    print(f"{name:18} {pattern:11} {rate:8.1f} frames/s   median {median * 1000:7.1f} ms"
                          + (f"   {len(errors)} errors, first: {errors[0]}" if errors else ""), flush=True)
    return 1 if failed else 0


def instances(count):
    """[(frame 1 URL path, file bytes)] of `count` JPEG 2000 instances."""
    made = []
    study = uid("bench-dicomweb", "study")
    for n in range(count):
        native = make_instance(patient_id="BENCH-DW", study_uid=study, series_uid=uid(study, "series"),
                               sop_uid=uid(study, n), instance_number=n + 1, rows=512, columns=512)
        data = transcode.transcoded_bytes(io.BytesIO(native), transcode.JPEG2000Lossless)
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        path = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}/frames/1")
        made.append((path, data))
    return made


def measure(target, paths, accept):
    latencies, errors, lock = [], [], threading.Lock()
    chunks = [paths[i::CONCURRENCY] for i in range(CONCURRENCY)]

    def client(mine):
        conn = target.connection()
        for path in mine:
            started = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": target.auth_header, "Accept": accept})
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status != 200 or not body:
                    errors.append(f"{response.status} for {path}")
                latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client, args=(mine,)) for mine in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return len(paths) / elapsed, statistics.median(latencies), errors


if __name__ == "__main__":
    sys.exit(main())

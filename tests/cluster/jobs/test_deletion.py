"""Deferred deletion: DELETE answers once the index rows are gone; the files
follow through the outbox, removed by a worker or, when the queue lost the
task, by the housekeeper."""

import time


from tests import servers
from tests.cluster.jobs.conftest import md5, study_files, upload
from tests.services import EmbeddedRedis
from tests.waiting import wait_for, wait_seconds_passed


def timed_delete(server, study):
    started = time.monotonic()
    status, answer = servers.request_json(f"{server.url}/studies/{study}", method="DELETE")
    elapsed = time.monotonic() - started
    assert status == 200, answer
    return elapsed


def wait_files(server, count):
    wait_for(lambda: len(server.storage_files()) == count, what=f"{count} files in storage")


def bystander_checksums(server, study):
    status, instances = servers.request_json(f"{server.url}/studies/{study}/instances")
    return sorted(md5(servers.request(f"{server.url}/instances/{i['ID']}/file")[2]) for i in instances)


def test_deleting_2000_instances_answers_before_any_file_is_removed_and_the_files_follow(server_factory,
                                                                                        worker_factory):
    # How fast a DELETE answers is a benchmark's question (benchmarks/jobs.py); what
    # a test can hold is that the answer does not wait for the files: with no worker
    # running, the index rows are gone and every file is still there, waiting in the
    # outbox; a worker started afterwards removes exactly those.
    server = server_factory(workers=2)  # its two uploads at a time are ingested in parallel
    bystander_files = study_files("del-keep", 5)
    (bystander,) = upload(server, bystander_files)
    (big,) = upload(server, study_files("del-big", 2000, series=4, rows=16, columns=16))
    assert len(server.storage_files()) == 2005

    timed_delete(server, big)
    assert servers.request_json(f"{server.url}/studies/{big}")[0] == 404
    assert len(server.storage_files()) == 2005
    assert server.sql("SELECT count(*) FROM file_deletion") == [(2000,)]

    worker_factory(server)
    wait_files(server, 5)
    wait_for(lambda: server.sql("SELECT count(*) FROM file_deletion") == [(0,)], what="an empty outbox")
    assert bystander_checksums(server, bystander) == sorted(md5(f) for f in bystander_files)


def test_files_deleted_while_redis_is_down_are_removed_by_the_housekeeper(server_factory, worker_factory, tmp_path):
    redis = EmbeddedRedis(tmp_path / "redis")
    try:
        server = server_factory(REDIS_URL=redis.url, PACS_HOUSEKEEPER_INTERVAL=1)
        worker_factory(server)
        bystander_files = study_files("down-keep", 3)
        (bystander,) = upload(server, bystander_files)
        (doomed,) = upload(server, study_files("down-gone", 40))
        redis.stop()

        timed_delete(server, doomed)
        deleted = time.monotonic()
        assert servers.request_json(f"{server.url}/studies/{doomed}")[0] == 404
        # The DELETE answers after its attempt to queue the removal: it failed, so
        # no worker can hear of it, now or later.
        assert "file removal not queued" in server.output()
        assert len(server.storage_files()) == 43  # no worker heard of it
        assert server.sql("SELECT count(*) FROM file_deletion") == [(40,)]

        redis = EmbeddedRedis(tmp_path / "redis")  # Redis is back, empty
        # Outbox rows older than 3 housekeeper intervals (3 s) are the housekeeper's:
        # an age the housekeeper counts itself.
        wait_seconds_passed(deleted, 3.2)
        servers.housekeeper_pass(server)
        assert len(server.storage_files()) == 3
        assert server.sql("SELECT count(*) FROM file_deletion") == [(0,)]
        assert bystander_checksums(server, bystander) == sorted(md5(f) for f in bystander_files)
    finally:
        redis.stop()


def test_a_file_an_index_row_still_uses_is_never_removed(server_factory):
    server = server_factory()
    files = study_files("del-guard", 2)
    (study,) = upload(server, files)
    key = server.sql("SELECT storage_key FROM attachment ORDER BY id LIMIT 1")[0][0]
    # An outbox row naming a file in use (a bug elsewhere, an operator's SQL):
    # the housekeeper keeps the file and says so.
    server.sql_execute("INSERT INTO file_deletion (storage_key, created_at) VALUES (%s, now() - interval '1 hour')",
                       (key,))
    servers.housekeeper_pass(server)
    assert len(server.storage_files()) == 2
    assert bystander_checksums(server, study) == sorted(md5(f) for f in files)

"""cluster.jobs, the job engine, driven in-process with test-only job types."""

import threading
import uuid

import pytest
from django.db.models import F
from django.utils import timezone

from cluster import jobs
from cluster.models import Job, JobState

# A run closes its database connection when it ends, as an RQ worker's would.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def job_type():
    """register(body): the name of a job type whose runs call body(context); gone after the test."""
    names = []

    def register(body):
        name = f"test-engine-{len(names)}"
        jobs.job_type(name)(body)
        names.append(name)
        return name

    yield register
    for name in names:
        del jobs.TYPES[name]


@pytest.fixture
def queued(settings):
    """The ids of the jobs handed to the queue: a queue of the test's own, in the run's Redis."""
    settings.QUEUES = dict(settings.QUEUES, jobs=f"test-engine-{uuid.uuid4().hex[:12]}")
    queue = jobs.queue("jobs")
    yield lambda: [rq_job.args[0] for rq_job in queue.jobs]
    queue.delete(delete_jobs=True)


def test_job_run_now_ends_in_success_with_what_it_wrote(job_type):
    def body(context):
        for item in range(context.params["items"]):
            context.step(item + 1, context.params["items"])
        context.content["Answer"] = 42

    job = jobs.submit(job_type(body), {"items": 3}, content={"Given": True}, run_now=True)

    assert job.state == JobState.SUCCESS
    assert (job.progress, job.position, job.attempts) == (100, 3, 1)
    assert job.content == {"Given": True, "Answer": 42}
    assert (job.error_code, job.error_description) == (0, "Success")
    assert job.completed_at is not None


def test_job_failed_ends_in_failure_with_its_code_description_and_details(job_type):
    def body(context):
        raise jobs.JobFailed("resource 1234 is no longer in the archive", 17, "Unknown resource")

    job = jobs.submit(job_type(body), {}, run_now=True)

    assert job.state == JobState.FAILURE
    assert (job.error_code, job.error_description, job.error_details) == (
        17, "Unknown resource", "resource 1234 is no longer in the archive")
    assert job.completed_at is not None


def test_bug_in_a_body_ends_in_failure_as_an_internal_error(job_type):
    def body(context):
        raise KeyError("Resources")

    job = jobs.submit(job_type(body), {}, run_now=True)

    assert job.state == JobState.FAILURE
    assert (job.error_code, job.error_description, job.error_details) == (-1, "Internal error", "KeyError: 'Resources'")


def test_submitted_job_is_queued_and_runs_once_however_often_it_is_delivered(job_type, queued):
    runs = []
    job = jobs.submit(job_type(runs.append), {})
    assert Job.objects.get(pk=job.pk).state == JobState.PENDING
    assert queued() == [job.id]

    jobs.execute(job.id, from_queue=False)
    jobs.execute(job.id, from_queue=False)

    assert len(runs) == 1
    assert Job.objects.get(pk=job.pk).state == JobState.SUCCESS


def test_job_delivered_again_while_it_runs_is_not_run_twice(job_type):
    runs = []

    def body(context):
        runs.append(context.id)
        # Another worker takes the same job from the queue meanwhile.
        other = threading.Thread(target=jobs.execute, args=(context.id, False))
        other.start()
        other.join()

    job = jobs.submit(job_type(body), {}, run_now=True)

    assert runs == [job.id]
    assert (job.state, job.attempts) == (JobState.SUCCESS, 1)


def test_pause_asked_while_running_stops_between_items_and_resume_continues(job_type, queued):
    done = []

    def body(context):
        for item in range(context.position, 3):
            if item == 1:
                jobs.pause(context.id)  # from any node, while this run works on item 1
            done.append(item)
            context.step(item + 1, 3, force=True)

    job = jobs.submit(job_type(body), {}, run_now=True)
    assert (job.state, job.position, job.requested) == (JobState.PAUSED, 2, "")
    assert job.completed_at is None

    jobs.resume(job.id)
    assert Job.objects.get(pk=job.pk).state == JobState.PENDING
    assert queued() == [job.id]

    jobs.execute(job.id, from_queue=False)
    assert Job.objects.get(pk=job.pk).state == JobState.SUCCESS
    assert done == [0, 1, 2]  # no item done twice


def test_cancel_asked_while_running_ends_cancelled(job_type):
    def body(context):
        jobs.cancel(context.id)
        context.step(1, 2, force=True)
        raise AssertionError("the run goes on after a cancel")

    job = jobs.submit(job_type(body), {}, run_now=True)

    assert (job.state, job.position) == (JobState.CANCELLED, 1)


def running_job(name, heartbeat_age, lost_runs=0):
    """A job whose latest run was claimed by a worker that last beat `heartbeat_age` seconds ago."""
    beat = timezone.now() - timezone.timedelta(seconds=heartbeat_age)
    return Job.objects.create(id=str(uuid.uuid4()), type=name, state=JobState.RUNNING, attempts=lost_runs + 1,
                              lost_runs=lost_runs, node="gone", worker="host:4242", created_at=beat,
                              started_at=beat, heartbeat_at=beat, queued_at=beat)


def test_reap_requeues_a_job_whose_worker_stopped_then_fails_it_after_the_attempts(job_type, queued, settings):
    settings.JOB_HEARTBEAT_TIMEOUT = 60
    settings.JOB_ATTEMPTS = 2
    name = job_type(lambda context: None)
    alive = running_job(name, heartbeat_age=5)
    lost = running_job(name, heartbeat_age=61)

    assert jobs.reap() == (1, 0, 0)
    job = Job.objects.get(pk=lost.pk)
    assert (job.state, job.lost_runs, job.worker) == (JobState.PENDING, 1, "")
    assert queued() == [lost.id]

    # Its second run is lost too: PACS_JOB_ATTEMPTS runs in all, then it fails.
    beat = timezone.now() - timezone.timedelta(seconds=61)
    Job.objects.filter(pk=lost.pk).update(state=JobState.RUNNING, attempts=F("attempts") + 1, heartbeat_at=beat)
    assert jobs.reap() == (0, 1, 0)
    job = Job.objects.get(pk=lost.pk)
    assert (job.state, job.lost_runs, job.error_description) == (JobState.FAILURE, 2, "Internal error")
    assert "stopped without finishing" in job.error_details
    assert Job.objects.get(pk=alive.pk).state == JobState.RUNNING


def test_run_given_up_for_dead_cannot_overwrite_the_run_that_replaced_it(job_type):
    went_on = []

    def body(context):
        # The housekeeper gave this run up and another worker claimed the job.
        Job.objects.filter(pk=context.id).update(attempts=F("attempts") + 1)
        context.step(1, 2, force=True)
        went_on.append(context.id)

    job = jobs.submit(job_type(body), {}, run_now=True)

    assert went_on == []
    assert (job.state, job.attempts, job.position, job.progress) == (JobState.RUNNING, 2, 0, 0)

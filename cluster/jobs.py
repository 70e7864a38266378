"""Jobs: database rows executed by RQ workers on any node (DESIGN §7).

The Job row is the truth; Redis only delivers "run job X" to some worker. A run
claims the row (Pending → Running) in one conditional UPDATE, so a job queued
twice runs once. While it runs, its worker writes progress and a heartbeat;
pause and cancel are requests written by any node and honoured between items.
A run whose worker died stops heartbeating: the housekeeper re-queues the job
(up to PACS_JOB_ATTEMPTS runs) or fails it with the reason.

Every write of a run is conditioned on its attempt number, so a run that was
given up for dead and comes back cannot overwrite the run that replaced it.
"""

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.utils import timezone
from rq import Queue

from cluster import registry
from cluster.models import FINISHED, Job, JobState
from archive import db

log = logging.getLogger("pacsweb.jobs")

# How often the progress row is written (and pause/cancel read) at most.
PROGRESS_INTERVAL = 0.25


@dataclass(frozen=True)
class JobType:
    name: str
    run: object  # run(context) -> None
    queue: str = "jobs"
    on_remove: object = None  # on_remove(job): release what the job owns
    after: object = None  # after(): run once a run of the job has ended


TYPES = {}


def job_type(name, queue="jobs", on_remove=None, after=None):
    """Register run(context) as the body of jobs of this type."""

    def register(run):
        TYPES[name] = JobType(name, run, queue, on_remove, after)
        return run

    return register


class JobFailed(Exception):
    """A job cannot complete: the code, description and details go to its row
    (Orthanc's ErrorCode / ErrorDescription / ErrorDetails)."""

    def __init__(self, details, code=-1, description="Internal error"):
        super().__init__(details)
        self.code = code
        self.description = description


class Interrupted(Exception):
    """Pause or cancel was asked: the run stops between items."""

    def __init__(self, state):
        super().__init__(state)
        self.state = state


class Superseded(Exception):
    """This run is no longer the job's latest (it was given up for dead)."""


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


# --- submitting ------------------------------------------------------------


def submit(type_name, params, content=None, priority=0, run_now=False):
    """Create a Pending job and hand it to a worker; the Job.

    With run_now the calling thread runs it instead and returns once it has
    finished (Orthanc's synchronous jobs): the job is listed all the same.
    """
    if type_name not in TYPES:
        raise ValueError(f"unknown job type {type_name}")
    job = Job.objects.create(
        id=str(uuid.uuid4()), type=type_name, params=params, content=content or {}, priority=priority,
        created_at=timezone.now(),
    )
    if run_now:
        execute(job.id, from_queue=False)
        job.refresh_from_db()
    else:
        enqueue(job)
    return job


_redis = None


def redis_connection():
    """A connection that gives up quickly: a Redis that does not answer must not
    hold a request; the database row is the truth and the housekeeper re-drives."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    return _redis


def queue(kind):
    return Queue(settings.QUEUES[kind], connection=redis_connection(), default_timeout=-1)


def enqueue(job):
    """Queue a run of the job; False when Redis could not take it (the housekeeper will)."""
    try:
        queue(TYPES[job.type].queue).enqueue(
            execute, job.id, job_timeout=-1, result_ttl=0, failure_ttl=3600,
            at_front=job.priority > 0,
        )
    except redis.exceptions.RedisError as error:
        log.warning("job %s not queued (%s): the housekeeper will queue it", job.id, error)
        return False
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now())
    return True


# --- running ---------------------------------------------------------------


class Context:
    """What a job body sees: its parameters, its content, where it stopped,
    and step() to report progress (which also raises Interrupted on request)."""

    def __init__(self, job):
        self.job = job
        self.id = job.id
        self.params = job.params
        self.content = dict(job.content)
        self.position = job.position
        self.attempt = job.attempts
        # (name, size) of the file the job left in the archive area, if any.
        self.output = None
        self._written = 0.0

    def step(self, done, total, force=False):
        """Items done out of total: written to the row (at most every
        PROGRESS_INTERVAL seconds unless forced); pause/cancel is honoured here."""
        self.position = done
        held = _held_at(done)
        force = force or held
        now = time.monotonic()
        if not force and now - self._written < PROGRESS_INTERVAL and done < total:
            return
        self._written = now
        progress = 100 if total <= 0 else min(99, int(done * 100 / total))
        requested = db.run(self._write, progress, done)
        if held:
            _wait_while_held(done)
        if requested == "cancel":
            raise Interrupted(JobState.CANCELLED)
        if requested == "pause":
            raise Interrupted(JobState.PAUSED)

    def save(self):
        """Write the content now (e.g. a result known before the end)."""
        db.run(self._write, None, self.position)

    def _write(self, progress, position):
        values = dict(content=self.content, position=position, heartbeat_at=timezone.now())
        if progress is not None:
            values["progress"] = progress
        if not self._mine().update(**values):
            raise Superseded(self.id)
        return self._mine().values_list("requested", flat=True).first()

    def _mine(self):
        return Job.objects.filter(pk=self.id, attempts=self.attempt, state=JobState.RUNNING)


def _held_at(done):
    """Whether a test holds runs at this item (settings.JOB_HOLD_FILE)."""
    if not settings.JOB_HOLD_FILE:
        return False
    try:
        return done >= int(Path(settings.JOB_HOLD_FILE).read_text().strip())
    except (OSError, ValueError):
        return False


def _wait_while_held(done):
    log.info("held after item %d while %s exists", done, settings.JOB_HOLD_FILE)
    while Path(settings.JOB_HOLD_FILE).exists():
        time.sleep(0.05)


def execute(job_id, from_queue=True):
    """Run the job if it is still Pending (the entry point RQ calls)."""
    close_old_connections()
    try:
        if from_queue and registry.is_draining():
            # A draining node takes no new job: hand it to another node's worker.
            log.info("job %s handed back: node %s is draining", job_id, settings.NODE_NAME)
            time.sleep(1)
            job = Job.objects.filter(pk=job_id, state=JobState.PENDING).first()
            if job is not None:
                enqueue(job)
            return
        claimed = db.run(_claim, job_id)
        if claimed is None:
            return
        _run(claimed)
    finally:
        connection.close()


def _claim(job_id):
    now = timezone.now()
    updated = Job.objects.filter(pk=job_id, state=JobState.PENDING).update(
        state=JobState.RUNNING, node=settings.NODE_NAME, worker=worker_name(), attempts=F("attempts") + 1,
        started_at=now, heartbeat_at=now, requested="", error_code=0, error_description="Success", error_details="",
    )
    return Job.objects.get(pk=job_id) if updated else None


def _run(job):
    context = Context(job)
    beating = threading.Event()
    heart = threading.Thread(target=_heartbeat, args=(job.id, job.attempts, beating), daemon=True,
                             name=f"heartbeat-{job.id[:8]}")
    heart.start()
    started = time.monotonic()
    outcome = dict(state=JobState.SUCCESS, progress=100)
    try:
        TYPES[job.type].run(context)
    except Interrupted as stop:
        outcome = dict(state=stop.state)
    except Superseded:
        log.warning("job %s: this run was superseded; it stops", job.id)
        return
    except JobFailed as failure:
        outcome = dict(state=JobState.FAILURE, error_code=failure.code, error_description=failure.description,
                       error_details=str(failure))
    except Exception as error:  # a job body's bug must end the job, not leave it Running
        log.exception("job %s (%s) failed", job.id, job.type)
        outcome = dict(state=JobState.FAILURE, error_code=-1, error_description="Internal error",
                       error_details=f"{type(error).__name__}: {error}")
    finally:
        beating.set()
        heart.join()
    runtime = time.monotonic() - started
    finished = outcome["state"] in FINISHED
    if db.run(_finish, job.id, job.attempts, context, outcome, runtime, finished) == "resumed":
        enqueue(job)
    if TYPES[job.type].after:
        TYPES[job.type].after()
    if finished:
        prune_history()


def _finish(job_id, attempt, context, outcome, runtime, finished):
    values = dict(outcome, content=context.content, position=context.position, requested="",
                  runtime=F("runtime") + runtime, heartbeat_at=timezone.now())
    if finished:
        values["completed_at"] = timezone.now()
    if context.output:
        values.update(output=context.output[0], output_size=context.output[1], output_used_at=timezone.now())
    mine = Job.objects.filter(pk=job_id, attempts=attempt, state=JobState.RUNNING)
    if outcome["state"] == JobState.PAUSED and not mine.filter(requested="pause").exists():
        # Resumed between our reading "pause" and now: the resume must not be lost.
        values["state"] = JobState.PENDING
        mine.update(**values)
        return "resumed"
    mine.update(**values)
    return None


def _heartbeat(job_id, attempt, stop):
    """Keep the row's heartbeat fresh while one item takes long (a big file)."""
    interval = max(0.5, settings.JOB_HEARTBEAT_TIMEOUT / 4)
    try:
        while not stop.wait(interval):
            try:
                Job.objects.filter(pk=job_id, attempts=attempt, state=JobState.RUNNING).update(
                    heartbeat_at=timezone.now())
            except Exception as error:  # a lost database is seen by the job itself
                log.warning("job %s: heartbeat not written: %s", job_id, error)
    finally:
        connection.close()


# --- acting on a job from any node -------------------------------------------


class NotAllowed(Exception):
    pass


def cancel(job_id):
    def unit():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state in (JobState.PENDING, JobState.PAUSED):
            Job.objects.filter(pk=job_id).update(state=JobState.CANCELLED, completed_at=timezone.now(),
                                                 requested="")
        elif job.state == JobState.RUNNING:
            Job.objects.filter(pk=job_id).update(requested="cancel")
        # A finished job stays as it is (Orthanc answers 200 too).
    db.run(unit)


def pause(job_id):
    def unit():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state == JobState.PENDING:
            Job.objects.filter(pk=job_id).update(state=JobState.PAUSED)
        elif job.state == JobState.RUNNING:
            Job.objects.filter(pk=job_id).update(requested="pause")
        elif job.state != JobState.PAUSED:
            raise NotAllowed(f"a job in state {job.state} cannot be paused")
    db.run(unit)


def resume(job_id):
    def unit():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state == JobState.PAUSED:
            Job.objects.filter(pk=job_id).update(state=JobState.PENDING)
            return True
        if job.state == JobState.RUNNING and job.requested == "pause":
            Job.objects.filter(pk=job_id).update(requested="")
            return False
        raise NotAllowed(f"only a paused job can be resumed; this one is {job.state}")
    if db.run(unit):
        enqueue(Job.objects.get(pk=job_id))


def resubmit(job_id):
    def unit():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.state not in (JobState.FAILURE, JobState.CANCELLED):
            raise NotAllowed(f"only a failed or cancelled job can be resubmitted; this one is {job.state}")
        Job.objects.filter(pk=job_id).update(
            state=JobState.PENDING, position=0, progress=0, completed_at=None, requested="", lost_runs=0,
            error_code=0, error_description="Success", error_details="")
    db.run(unit)
    enqueue(Job.objects.get(pk=job_id))


# --- housekeeping ------------------------------------------------------------


def reap():
    """Re-queue or fail Running jobs whose worker stopped heartbeating, and queue
    Pending jobs the queue lost; return (requeued, failed, redriven)."""
    now = timezone.now()
    dead_line = now - timezone.timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    requeued = failed = redriven = 0
    for job in Job.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=dead_line):
        worker = f"{job.worker} on node {job.node}" if job.node else job.worker
        if job.lost_runs + 1 < settings.JOB_ATTEMPTS:
            if Job.objects.filter(pk=job.pk, attempts=job.attempts, state=JobState.RUNNING).update(
                    state=JobState.PENDING, requested="", node="", worker="", lost_runs=F("lost_runs") + 1):
                log.warning("job %s: its worker %s stopped; queued again", job.id, worker)
                requeued += 1
                enqueue(job)
        elif Job.objects.filter(pk=job.pk, attempts=job.attempts, state=JobState.RUNNING).update(
                state=JobState.FAILURE, completed_at=now, error_code=-1, error_description="Internal error",
                lost_runs=F("lost_runs") + 1,
                error_details=f"the worker running this job ({worker}) stopped without finishing it; "
                              f"{job.lost_runs + 1} run(s) lost, not run again (PACS_JOB_ATTEMPTS)"):
            log.warning("job %s: its worker %s stopped; failed after %d lost runs", job.id, worker, job.lost_runs + 1)
            failed += 1
    # A Pending job queued long ago and still Pending: the queue may have lost it
    # (Redis restarted). Queueing it again is harmless: only one run claims it.
    stale = now - timezone.timedelta(seconds=max(30, settings.JOB_HEARTBEAT_TIMEOUT))
    for job in Job.objects.filter(state=JobState.PENDING).exclude(queued_at__gt=stale):
        if enqueue(job):
            redriven += 1
    return requeued, failed, redriven


def prune_history():
    """Remove the oldest finished jobs beyond PACS_JOBS_HISTORY_SIZE, with what they own."""
    doomed = list(Job.objects.filter(state__in=FINISHED).order_by("-completed_at")[settings.JOBS_HISTORY_SIZE:])
    for job in doomed:
        forget(job)
    return len(doomed)


def forget(job):
    """Remove a finished job from the history, with what it owns."""
    Job.objects.filter(pk=job.pk).delete()
    kind = TYPES.get(job.type)
    if kind and kind.on_remove:
        kind.on_remove(job)

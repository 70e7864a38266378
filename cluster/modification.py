"""The ResourceModification job (Orthanc's name): modify or anonymize instances one by
one on any node's worker, for /modify and /anonymize of a series, study or patient,
for /studies/{id}/split and /merge, and for /tools/bulk-modify and bulk-anonymize.

The UIDs of the result are a function of the job's id (archive.editing.new_uid), so a
run that resumes after its worker died re-creates exactly the files it may already
have stored, and the ingest path answers those AlreadyStored: no duplicate.
"""

from archive import audit, editing, resources
from archive.models import Level
from cluster import jobs
from cluster.jobs import JobFailed, job_type

TYPE = "ResourceModification"
KINDS = ("modify", "split", "merge", "bulk")


def params(level, public_id, edit, instance_ids, remapped, username, kind="modify", target=None):
    """Everything a run needs, fixed at submission: a resumed run sees the same sources.
    `level`: the level whose UIDs (and those below) are renewed; `target`: the study a
    split creates or a merge fills ({"ID", "UID"})."""
    assert kind in KINDS
    return {"kind": kind, "level": level, "resource": public_id, "edit": edit.to_json(), "instances": instance_ids,
            "remapped": remapped, "username": username, "target": target}


def submit(plan, kind, resource, username, asynchronous=False, priority=0):
    """The job of an editing plan (archive.editing.Plan): queued for any node's worker, or
    run in this thread when not asynchronous (Orthanc's synchronous default); the Job."""
    return jobs.submit(TYPE, params(plan.level, resource, plan.edit, plan.instances, plan.remapped, username,
                                    kind=kind, target=plan.target),
                       priority=priority, run_now=not asynchronous)


@job_type(TYPE)
def modification_job(context):
    kind, level, source = context.params.get("kind", "modify"), context.params["level"], context.params["resource"]
    edit = editing.Edit.from_json(context.params["edit"])
    instance_ids = context.params["instances"]
    origin = editing.node_origin(context.params["username"])
    ancestors = editing.ancestors_of(instance_ids[context.position:])
    remapped = set(context.params["remapped"])
    content = context.content
    content.setdefault("FailedInstancesCount", 0)
    total = len(instance_ids)
    for index in range(context.position, total):
        instance_id = instance_ids[index]
        if instance_id not in ancestors:
            # Gone since the job was submitted (deleted meanwhile): counted as failed, as Orthanc does.
            content["FailedInstancesCount"] += 1
        else:
            try:
                outcome = editing.edit_and_store(instance_id, edit, context.id, level, remapped, origin,
                                                 ancestors[instance_id])
            except editing.InvalidEdit as error:
                raise JobFailed(str(error), *error.orthanc)
            _record(content, kind, level, outcome, edit)
        context.step(index + 1, total)
    done = total - content["FailedInstancesCount"]
    if total and not done:
        raise JobFailed(f"none of the {total} instances could be read any more", 17, "Unknown resource")
    if not edit.keep_source:
        # Only once every result is stored: a run killed before this point left the sources whole.
        editing.remove_sources(instance_ids)
    _finish(content, kind, level, edit, done, context.params.get("target"))
    audit.record("user", context.params["username"] or "?", "anonymize" if edit.anonymize else "modify",
                 level=level if source else "", resource=source or "",
                 details={"operation": kind, "source": source or context.params["instances"][:100],
                          "result": content.get("ID") or content.get("TargetStudy") or content.get("Resources"),
                          "instances": total, "keep_source": edit.keep_source, "job": context.id,
                          "request": context.params["edit"]})


def _record(content, kind, level, outcome, edit):
    if kind == "modify":
        answer = editing.answer(level, outcome, edit.anonymize, 0, transcode=edit.transcode)
        content.update({k: v for k, v in answer.items() if k not in ("FailedInstancesCount", "InstancesCount")})
    elif kind == "split":
        content["TargetStudy"] = outcome.study
    elif kind == "bulk":
        created = content.setdefault("_created", {})
        for lvl, public_id in ((Level.INSTANCE, outcome.instance), (Level.SERIES, outcome.series),
                               (Level.STUDY, outcome.study), (Level.PATIENT, outcome.patient)):
            ids = created.setdefault(lvl, [])
            if public_id not in ids:
                ids.append(public_id)


def _finish(content, kind, level, edit, done, target):
    content["Description"] = "REST API"
    content["InstancesCount"] = done
    if kind == "modify":
        return
    if kind in ("split", "merge"):
        content.pop("IsAnonymization", None)
        content["TargetStudy"] = target["ID"] if kind == "merge" else content.get("TargetStudy", "")
        if kind == "split":
            content["TargetStudyUID"] = target["UID"]
        return
    created = content.pop("_created", {})
    content["IsAnonymization"] = edit.anonymize
    content["Resources"] = [{"ID": public_id, "Path": f"/{resources.PLURAL[lvl]}/{public_id}", "Type": lvl}
                            for lvl in (Level.INSTANCE, Level.SERIES, Level.STUDY, Level.PATIENT)
                            for public_id in sorted(created.get(lvl, []))]

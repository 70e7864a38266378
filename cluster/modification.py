"""The ResourceModification job (Orthanc's name): modify or anonymize the instances
of a patient, study or series, one by one, on any node's worker.

The UIDs of the result are a function of the job's id (archive.editing.new_uid), so a
run that resumes after its worker died re-creates exactly the files it may already
have stored, and the ingest path answers those AlreadyStored: no duplicate.
"""

from archive import audit, editing
from cluster.jobs import JobFailed, job_type

TYPE = "ResourceModification"


def params(level, public_id, edit, instance_ids, remapped, username):
    """Everything a run needs, fixed at submission: a resumed run sees the same sources."""
    return {"level": level, "resource": public_id, "edit": edit.to_json(), "instances": instance_ids,
            "remapped": remapped, "username": username}


@job_type(TYPE)
def modification_job(context):
    level, source = context.params["level"], context.params["resource"]
    edit = editing.Edit.from_json(context.params["edit"])
    instance_ids = context.params["instances"]
    seed = context.id
    origin = editing.node_origin(context.params["username"])
    ancestors = editing.ancestors_of(instance_ids[context.position:])
    remapped = set(context.params["remapped"])
    outcome = None
    total = len(instance_ids)
    for index in range(context.position, total):
        instance_id = instance_ids[index]
        if instance_id not in ancestors:
            # Gone since the job was submitted (deleted meanwhile): counted as failed, as Orthanc does.
            context.content["FailedInstancesCount"] = context.content.get("FailedInstancesCount", 0) + 1
        else:
            try:
                outcome = editing.edit_and_store(instance_id, edit, seed, level, remapped, origin,
                                                 ancestors[instance_id])
            except editing.InvalidEdit as error:
                raise JobFailed(str(error), *error.orthanc)
            context.content.update(editing.answer(level, outcome, edit.anonymize, total,
                                                  context.content.get("FailedInstancesCount", 0)))
        context.step(index + 1, total)
    if outcome is None and "ID" not in context.content:
        raise JobFailed(f"no instance of {level.lower()} {source} could be read", 17, "Unknown resource")
    if not edit.keep_source:
        # Only once every result is stored: a run killed before this point left the sources whole.
        editing.remove_sources(instance_ids)
    audit.record("user", context.params["username"] or "?", "anonymize" if edit.anonymize else "modify",
                 level=level, resource=source,
                 details={"source": source, "result": context.content.get("ID"), "instances": total,
                          "keep_source": edit.keep_source, "job": context.id,
                          "request": context.params["edit"]})

"""Orthanc-compatible REST for modalities and for pacsweb as an SCU.

/modalities lives in the database, so every node answers the same list (in
Orthanc it is per node). Queries sent to a modality are kept in the database
too: any node can list their answers and retrieve them.
"""

import json
import uuid

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from pydicom.datadict import tag_for_keyword

from archive import scu, sends, tags
from archive.models import Level
from api.rest import orthanc_tags
from api.rest.bodies import spool
from api.rest.errors import error_response, rest_view
from cluster import jobs
from api.rest.jobs import BadJobOptions, job_options, submitted
from archive.models import DicomQuery, Modality, Peer
from cluster.models import JobState
from cluster.tasks import PeerClient, PeerError, modality_peer
from archive.modalities import InvalidModality, InvalidPeer, parse_modality, parse_peer

QUERY_HISTORY = 100  # Orthanc's QueryRetrieveSize
# Orthanc reads a level in either number ("Study" or "Studies"; clients send both).
LEVELS = {"patient": Level.PATIENT, "patients": Level.PATIENT, "study": Level.STUDY, "studies": Level.STUDY,
          "series": Level.SERIES, "instance": Level.INSTANCE, "instances": Level.INSTANCE, "image": Level.INSTANCE}
# The routes below a modality that pacsweb answers, as GET /modalities/{m} lists them
# (Orthanc also lists "find" and "storage-commitment", which pacsweb does not route;
# "get" is Orthanc 1.11's C-GET).
OPERATIONS = ["configuration", "echo", "find-instance", "find-patient", "find-series", "find-study",
              "find-worklist", "get", "move", "query", "store", "store-straight"]


class BadRequest(Exception):
    pass


def rest(*methods):
    """csrf-exempt, method-restricted REST view with the archive's error mapping."""

    def decorate(view):
        view = rest_view(view)

        def wrapper(request, *args, **kwargs):
            try:
                return view(request, *args, **kwargs)
            except (BadRequest, InvalidModality, InvalidPeer) as error:
                return error_response(request, 400, str(error))
            except scu.DicomNetworkError as error:
                return error_response(request, 502, str(error), orthanc=(9, "Error in the network protocol"))

        return csrf_exempt(require_http_methods(list(methods))(wrapper))

    return decorate


def _body(request, default=None):
    raw = request.body
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}")


def _modality(request, name):
    modality = Modality.objects.filter(name=name).first()
    if modality is None:
        raise _NotFound(request, f"modality {name!r} is not configured")
    return modality


class _NotFound(Exception):
    def __init__(self, request, details):
        self.response = error_response(request, 404, details, orthanc=(7, "Inexistent item"))


def _handle_not_found(view):
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except _NotFound as missing:
            return missing.response

    return wrapper


def describe(modality):
    """A modality as Orthanc shows it in /modalities?expand."""
    return {
        "AET": modality.aet,
        "Host": modality.host,
        "Port": modality.port,
        "Manufacturer": modality.manufacturer,
        "AllowEcho": modality.allow_echo,
        "AllowFind": modality.allow_find,
        "AllowGet": modality.allow_get,
        "AllowMove": modality.allow_move,
        "AllowStore": modality.allow_store,
        # A modality allowed to find queries the worklist too (archive/modalities.py).
        "AllowFindWorklist": modality.allow_find,
        # Storage commitment (N-ACTION, N-EVENT-REPORT) and MPPS are allowed to whoever
        # may store (dicom/workflow.py).
        "AllowEventReport": modality.allow_store,
        "AllowNAction": modality.allow_store,
        # Sends transcode when the modality accepts only other transfer syntaxes (archive/scu.py).
        "AllowTranscoding": True,
        "UseDicomTls": False,
        "LocalAet": modality.local_aet or "",
        "Timeout": modality.timeout,
    }


@_handle_not_found
@rest("GET")
def modalities(request):
    return _named_list(request, Modality, describe)


def _named_list(request, model, description):
    """The names of the rows (modalities, peers), or name → description with ?expand."""
    rows = model.objects.all()
    if "expand" in request.GET:
        return JsonResponse({row.name: description(row) for row in rows})
    return JsonResponse([row.name for row in rows], safe=False)


@_handle_not_found
@rest("GET", "PUT", "DELETE")
def modality(request, name):
    def fields():
        parsed = parse_modality(name, _body(request))
        return {f.name: getattr(parsed, f.name) for f in Modality._meta.fields
                if f.name not in ("id", "name", "updated_at")}

    return _named_item(request, name, Modality, fields, lambda: _modality(request, name), OPERATIONS)


def _named_item(request, name, model, fields, existing, operations):
    """PUT (create or replace), DELETE, or GET (the item's operations) of a named
    row of the cluster's configuration: a modality, a peer."""
    if request.method == "PUT":
        values = fields()
        try:
            model.objects.update_or_create(name=name, defaults=values)
        except IntegrityError:  # created by another request in the meantime: update it
            model.objects.filter(name=name).update(**values)
        return JsonResponse({})
    row = existing()
    if request.method == "DELETE":
        row.delete()
        return JsonResponse({})
    return JsonResponse(operations, safe=False)


@_handle_not_found
@rest("GET")
def modality_configuration(request, name):
    return JsonResponse(describe(_modality(request, name)))


@_handle_not_found
@rest("POST")
def modality_echo(request, name):
    scu.echo(modality_peer(_modality(request, name)))
    return JsonResponse({})


def _resources_of(request, body):
    """The resource ids of a store request: an id, a list of ids, or {"Resources": [...]}."""
    if body is None and request.body.strip():
        body = request.body.decode().strip()
    if isinstance(body, str):
        resources = [body]
    elif isinstance(body, list):
        resources = body
    elif isinstance(body, dict) and isinstance(body.get("Resources"), list):
        resources = body["Resources"]
    else:
        raise BadRequest('expected a resource id, a list of ids, or {"Resources": [...]}')
    if not resources or not all(isinstance(r, str) for r in resources):
        raise BadRequest("resource ids must be a non-empty list of strings")
    return resources


def _run_job(request, type_name, params, content, body):
    """Submit the job; answer {ID, Path} when asynchronous, else run it here and
    answer its content (Orthanc's synchronous jobs), 502 if it failed."""
    try:
        asynchronous, priority = job_options(body)
    except BadJobOptions as error:
        raise BadRequest(str(error))
    job = jobs.submit(type_name, params, content=content, priority=priority, run_now=not asynchronous)
    if asynchronous:
        return submitted(job)
    if job.state != JobState.SUCCESS:
        return error_response(request, 502, f"{job.error_description}: {job.error_details}",
                              orthanc=(job.error_code, job.error_description))
    return JsonResponse(job.content)


@_handle_not_found
@rest("POST")
def modality_store(request, name):
    """Send resources (ids of any level) with C-STORE, as a DicomModalityStore job.

    The body is one id as plain text, a list of ids, or Orthanc's object:
    Resources, Synchronous / Asynchronous, Priority, Permissive, LocalAet,
    MoveOriginatorAet / MoveOriginatorID, StorageCommitment, Timeout."""
    modality = _modality(request, name)
    body = _body_or_id(request)
    options = body if isinstance(body, dict) else {}
    # Orthanc's option: after the send, ask the modality to commit to what it received.
    commitment = options.get("StorageCommitment", False)
    if not isinstance(commitment, bool):
        raise BadRequest("StorageCommitment must be true or false")
    send = _send(request, sends.to_modality, modality, _resources_of(request, body), storage_commitment=commitment)
    params = dict(send.params, **_store_options(options))
    return _run_job(request, send.type, params, send.content, body)


def _body_or_id(request):
    """The JSON body, or the one resource id of a plain-text body (Orthanc takes both)."""
    text = request.body.decode("utf-8", "replace").strip()
    if text and not text.startswith(("{", "[", '"')):
        if len(text.split()) != 1:
            raise BadRequest("a plain-text body is one resource id")
        return text
    return _body(request)


def _store_options(options):
    """Job parameters from Orthanc's C-STORE options (the job's own options are
    read by _run_job)."""
    params = {}
    for name in ("Permissive",):
        if name in options and not isinstance(options[name], bool):
            raise BadRequest(f"{name} must be true or false")
    params["permissive"] = options.get("Permissive", False)
    if "LocalAet" in options:
        if not isinstance(options["LocalAet"], str) or not 0 < len(options["LocalAet"]) <= 16:
            raise BadRequest("LocalAet must be an AE title (1 to 16 characters)")
        params["local_aet"] = options["LocalAet"]
    if "Timeout" in options:
        if not isinstance(options["Timeout"], int) or isinstance(options["Timeout"], bool) or options["Timeout"] < 0:
            raise BadRequest("Timeout must be a whole number of seconds")
        params["timeout"] = options["Timeout"]
    if "MoveOriginatorAet" in options or "MoveOriginatorID" in options:
        aet, message_id = options.get("MoveOriginatorAet", ""), options.get("MoveOriginatorID", 0)
        if not isinstance(aet, str) or not 0 < len(aet) <= 16:
            raise BadRequest("MoveOriginatorAet must be an AE title (1 to 16 characters)")
        if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 <= message_id <= 0xFFFF:
            raise BadRequest("MoveOriginatorID must be a message id (0 to 65535)")
        params["move_originator"] = [aet, message_id]
    return params


@_handle_not_found
@rest("POST")
def modality_store_straight(request, name):
    """C-STORE the DICOM file of the body, without storing it here (Orthanc 1.9)."""
    modality = _modality(request, name)
    with spool(request) as body:
        sop_class, sop_instance = scu.store_straight(modality_peer(modality), body)
    return JsonResponse({"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance})


@rest("POST")
def dicom_echo(request):
    """C-ECHO a modality described in the body, not registered (Orthanc 1.8.1)."""
    body = _body(request, {})
    if not isinstance(body, dict):
        raise BadRequest('expected {"AET": ..., "Host": ..., "Port": ...}')
    scu.echo(modality_peer(parse_modality("dicom-echo", body)))
    return JsonResponse({})


# The legacy C-FIND routes (deprecated by Orthanc for /query): the body is the
# query, the answer the simplified tags of each match.
FIND_LEVELS = {"patient": Level.PATIENT, "study": Level.STUDY, "series": Level.SERIES, "instance": Level.INSTANCE}


@_handle_not_found
@rest("POST")
def modality_find_level(request, name, level):
    modality = _modality(request, name)
    query = _body(request, {})
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise BadRequest("the body must map DICOM keywords to strings")
    level = FIND_LEVELS[level]
    asked = {**{keyword: "" for keyword in FIND_TEMPLATES[level]}, **IDENTIFIERS_ASKED[level], **query}
    try:
        answers = scu.find(modality_peer(modality), level, asked)
    except (ValueError, TypeError) as error:
        raise BadRequest(f"invalid query key: {error}")
    return JsonResponse([_simplify(_dicom_as_json(answer)) for answer in answers], safe=False)


def _send(request, describe_job, target, resources, **options):
    try:
        return describe_job(target, resources, "REST API", **options)
    except sends.UnknownResource as error:
        raise _NotFound(request, str(error))


def _level(value):
    level = LEVELS.get(str(value or "").lower())
    if level is None:
        raise BadRequest(f"Level must be Patient, Study, Series or Instance, not {value!r}")
    return level


@_handle_not_found
@rest("POST")
def modality_query(request, name):
    modality = _modality(request, name)
    body = _body(request, {})
    if not isinstance(body, dict):
        raise BadRequest('expected {"Level": ..., "Query": {...}}')
    return _run_query(modality, _level(body.get("Level")), body.get("Query", {}))


def _run_query(modality, level, query):
    """C-FIND `query` at `level` on the modality; the answers kept as a query (/queries/{id})."""
    if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
        raise BadRequest("Query must map DICOM keywords to strings")
    try:
        answers = scu.find(modality_peer(modality), level, {**IDENTIFIERS_ASKED[level], **query})
    except (ValueError, TypeError) as error:
        raise BadRequest(f"invalid query key: {error}")
    stored = DicomQuery.objects.create(
        id=str(uuid.uuid4()), modality=modality.name, level=level, query=query,
        answers=[_dicom_as_json(answer) for answer in answers],
    )
    stale = DicomQuery.objects.order_by("-created_at").values_list("id", flat=True)[QUERY_HISTORY:]
    DicomQuery.objects.filter(id__in=list(stale)).delete()
    return JsonResponse({"ID": stored.id, "Path": f"/queries/{stored.id}"})


# What Orthanc's legacy /modalities/{m}/find-{level} routes ask for beyond the query: a
# fixed template per level, not all the level's main tags (tests/compat compares the
# study and series ones with Debian's Orthanc).
FIND_TEMPLATES = {
    Level.PATIENT: tags.PATIENT_TAGS,
    Level.STUDY: ("StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber", "StudyInstanceUID",
                  "ReferringPhysicianName"),
    Level.SERIES: ("SeriesDate", "SeriesTime", "Modality", "SeriesDescription", "BodyPartExamined", "ProtocolName",
                   "SeriesNumber", "SeriesInstanceUID", "OperatorsName", "PerformedProcedureStepDescription"),
    Level.INSTANCE: tags.INSTANCE_TAGS,
}
# Orthanc's /modalities/{m}/query asks for the identifiers of the level and of the
# levels above, whatever the query names, so that every answer can be retrieved and
# placed in the hierarchy.
IDENTIFIERS_ASKED = {
    Level.PATIENT: {"PatientID": ""},
    Level.STUDY: {"AccessionNumber": "", "PatientID": "", "StudyInstanceUID": ""},
    Level.SERIES: {"AccessionNumber": "", "PatientID": "", "StudyInstanceUID": "", "SeriesInstanceUID": ""},
    Level.INSTANCE: {"AccessionNumber": "", "PatientID": "", "StudyInstanceUID": "", "SeriesInstanceUID": "",
                     "SOPInstanceUID": ""},
}


def _dicom_as_json(dataset):
    out = {}
    for element in dataset:
        if element.VR == "SQ":
            continue
        tag = f"{element.tag.group:04x},{element.tag.element:04x}"
        value = element.value
        if value is None:
            text = ""
        elif type(value).__name__ == "MultiValue":
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        out[tag] = {"Name": element.keyword or "Unknown Tag & Data", "Type": "String", "Value": text}
    return out


def _query(request, query_id):
    found = DicomQuery.objects.filter(id=query_id).first()
    if found is None:
        raise _NotFound(request, f"query {query_id} does not exist (or was pruned)")
    return found


def _simplify(answer):
    return {entry["Name"]: entry["Value"] for entry in answer.values()}


@_handle_not_found
@rest("POST")
def modality_find_worklist(request, name):
    """C-FIND of the modality's worklist: {"Query": {...}, "Full", "Short"}, or (as
    before Orthanc 1.9) the query itself; the answers' tags, simplified by default."""
    modality = _modality(request, name)
    body = _body(request, {})
    if not isinstance(body, dict):
        raise BadRequest('expected {"Query": {...}} or the query itself')
    query = body["Query"] if isinstance(body.get("Query"), dict) else body
    if not all(isinstance(v, str) or isinstance(v, list) and all(isinstance(i, dict) for i in v)
               for v in query.values()):
        raise BadRequest("the query maps DICOM keywords to strings (a sequence to a list of such objects)")
    try:
        answers = scu.find_worklist(modality_peer(modality), query)
    except (ValueError, TypeError, AttributeError) as error:
        raise BadRequest(f"invalid query key: {error}")
    form = orthanc_tags.full if body.get("Full") else orthanc_tags.short if body.get("Short") else orthanc_tags.simplified
    return JsonResponse([form(answer) for answer in answers], safe=False)


@rest("GET")
def query_list(request):
    """The queries kept (the QUERY_HISTORY most recent), oldest first, as Orthanc lists them."""
    return JsonResponse(list(DicomQuery.objects.order_by("created_at", "id").values_list("id", flat=True)), safe=False)


@_handle_not_found
@rest("GET", "DELETE")
def query_detail(request, query_id):
    found = _query(request, query_id)
    if request.method == "DELETE":
        found.delete()
        return JsonResponse({})
    return JsonResponse(["answers", "level", "modality", "query", "retrieve"], safe=False)


@_handle_not_found
@rest("GET")
def query_answers(request, query_id):
    found = _query(request, query_id)
    if "expand" in request.GET:
        if "simplify" in request.GET:
            return JsonResponse([_simplify(a) for a in found.answers], safe=False)
        return JsonResponse(found.answers, safe=False)
    return JsonResponse([str(n) for n in range(len(found.answers))], safe=False)


@_handle_not_found
@rest("GET")
def query_answer_content(request, query_id, index):
    found = _query(request, query_id)
    if index >= len(found.answers):
        raise _NotFound(request, f"query {query_id} has {len(found.answers)} answers")
    answer = found.answers[index]
    return JsonResponse(_simplify(answer) if "simplify" in request.GET else answer)


# The routes below one answer: Orthanc 1.10's child queries at the levels below the answer's.
CHILD_QUERIES = {"query-studies": Level.STUDY, "query-series": Level.SERIES, "query-instances": Level.INSTANCE}
LEVEL_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE]
# The identifiers of an answer that place a child query under it.
PARENT_IDENTIFIERS = {Level.PATIENT: ("PatientID",), Level.STUDY: ("StudyInstanceUID",),
                      Level.SERIES: ("StudyInstanceUID", "SeriesInstanceUID")}


def _answer(request, found, index):
    if index >= len(found.answers):
        raise _NotFound(request, f"query {found.id} has {len(found.answers)} answers")
    return found.answers[index]


def _child_levels(found):
    return [name for name, level in CHILD_QUERIES.items()
            if LEVEL_ORDER.index(level) > LEVEL_ORDER.index(Level(found.level))]


@_handle_not_found
@rest("GET")
def query_answer(request, query_id, index):
    found = _query(request, query_id)
    _answer(request, found, index)
    return JsonResponse(["content", "retrieve", *_child_levels(found)], safe=False)


@_handle_not_found
@rest("POST")
def query_answer_child(request, query_id, index, child):
    """A query at a level below the answer's, on the same modality, for the answer's
    identifiers and the keys of the body's Query (Orthanc 1.10)."""
    found = _query(request, query_id)
    answer = _simplify(_answer(request, found, int(index)))
    if child not in _child_levels(found):
        raise BadRequest(f"an answer at the {found.level} level has no {child}")
    body = _body(request, {})
    if not isinstance(body, dict):
        raise BadRequest('expected {"Query": {...}}')
    query = body.get("Query", {})
    if not isinstance(query, dict):
        raise BadRequest("Query must map DICOM keywords to strings")
    parents = {key: answer[key] for key in PARENT_IDENTIFIERS[Level(found.level)] if answer.get(key)}
    return _run_query(_modality(request, found.modality), CHILD_QUERIES[child], {**query, **parents})


@_handle_not_found
@rest("GET")
def query_attribute(request, query_id, attribute):
    found = _query(request, query_id)
    value = {"level": found.level, "modality": found.modality, "query": found.query}.get(attribute)
    if value is None:
        raise _NotFound(request, f"unknown attribute {attribute}")
    if isinstance(value, dict):
        # As Orthanc: the query's keys by tag with name and type; ?simplify by name.
        if "simplify" in request.GET:
            return JsonResponse(value)
        return JsonResponse({f"{tag >> 16:04x},{tag & 0xFFFF:04x}": {"Name": keyword, "Type": "String", "Value": text}
                             for keyword, text in value.items() if (tag := tag_for_keyword(keyword)) is not None})
    return HttpResponse(value, content_type="text/plain")


@_handle_not_found
@rest("POST")
def query_retrieve(request, query_id, index=None):
    """Retrieve the answers (all, or one) with C-MOVE to TargetAet (default: us), or C-GET."""
    found = _query(request, query_id)
    modality = _modality(request, found.modality)
    body = _body(request)
    if body is None and request.body.strip():
        body = request.body.decode().strip()
    if isinstance(body, str):
        options = {"TargetAet": body}
    elif isinstance(body, dict) or body is None:
        options = body or {}
    else:
        raise BadRequest('expected a target AE title or {"TargetAet": ..., "RetrieveMethod": "C-MOVE"|"C-GET"}')
    answers = found.answers if index is None else found.answers[index:index + 1]
    if index is not None and not answers:
        raise _NotFound(request, f"query {query_id} has {len(found.answers)} answers")
    level = found.level
    key = scu.UNIQUE_KEY[level]
    identifiers = []
    for answer in answers:
        values = _simplify(answer)
        identifiers.append({k: values[k] for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                                   "SOPInstanceUID") if values.get(k)} or {key: ""})
    method = str(options.get("RetrieveMethod", "C-MOVE")).upper()
    if method not in ("C-MOVE", "C-GET"):
        raise BadRequest("RetrieveMethod must be C-MOVE or C-GET")
    target = options.get("TargetAet") or settings.AE_TITLE
    content = {
        "Description": "REST API",
        "LocalAet": modality.local_aet or settings.AE_TITLE,
        "Query": [_simplify(a) for a in answers],
        "RemoteAet": modality.aet,
        "TargetAet": target if method == "C-MOVE" else settings.AE_TITLE,
        "RetrieveMethod": method,
    }
    params = {"modality": modality.name, "level": level, "identifiers": identifiers, "target": target}
    return _run_job(request, "DicomMoveScu" if method == "C-MOVE" else "DicomGetScu", params, content, options)


@_handle_not_found
@rest("POST")
def modality_move(request, name):
    modality = _modality(request, name)
    body = _body(request, {})
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list):
        raise BadRequest('expected {"Level": ..., "Resources": [{...}], "TargetAet": ...}')
    level = _level(body.get("Level"))
    if not all(isinstance(r, dict) for r in body["Resources"]):
        raise BadRequest("each resource is an object of DICOM keywords")
    target = body.get("TargetAet") or settings.AE_TITLE
    content = {"Description": "REST API", "LocalAet": modality.local_aet or settings.AE_TITLE,
               "Query": body["Resources"], "RemoteAet": modality.aet, "TargetAet": target}
    params = {"modality": modality.name, "level": level, "identifiers": body["Resources"], "target": target}
    return _run_job(request, "DicomMoveScu", params, content, body)


@_handle_not_found
@rest("POST")
def modality_get(request, name):
    """C-GET of resources from the modality into the archive (Orthanc 1.11):
    {"Level": ..., "Resources": [{...}], "Asynchronous", "Priority"}."""
    modality = _modality(request, name)
    body = _body(request, {})
    if not isinstance(body, dict) or not isinstance(body.get("Resources"), list):
        raise BadRequest('expected {"Level": ..., "Resources": [{...}]}')
    level = _level(body.get("Level"))
    if not all(isinstance(r, dict) for r in body["Resources"]):
        raise BadRequest("each resource is an object of DICOM keywords")
    content = {"Description": "REST API", "LocalAet": modality.local_aet or settings.AE_TITLE,
               "Query": body["Resources"], "RemoteAet": modality.aet, "TargetAet": settings.AE_TITLE,
               "RetrieveMethod": "C-GET"}
    params = {"modality": modality.name, "level": level, "identifiers": body["Resources"], "target": settings.AE_TITLE}
    return _run_job(request, "DicomGetScu", params, content, body)


# --- Orthanc peers -------------------------------------------------------------

PEER_OPERATIONS = ["configuration", "store", "store-straight", "system"]


def _describe_peer(peer):
    answer = {
        "Url": peer.url,
        "HttpHeaders": sorted(peer.http_headers),
        "Pkcs11": False,
        "Timeout": peer.timeout,
    }
    # As Orthanc: the user name when there is one, with a null password (a secret
    # stays in the database); neither when there is none.
    if peer.username:
        answer.update(Username=peer.username, Password=None)
    return answer


def _peer_row(request, name):
    peer = Peer.objects.filter(name=name).first()
    if peer is None:
        raise _NotFound(request, f"peer {name!r} is not configured")
    return peer


@_handle_not_found
@rest("GET")
def peers(request):
    return _named_list(request, Peer, _describe_peer)


@_handle_not_found
@rest("GET", "PUT", "DELETE")
def peer(request, name):
    return _named_item(request, name, Peer, lambda: parse_peer(_body(request)), lambda: _peer_row(request, name),
                       PEER_OPERATIONS)


@_handle_not_found
@rest("GET")
def peer_configuration(request, name):
    return JsonResponse(_describe_peer(_peer_row(request, name)))


@_handle_not_found
@rest("GET")
def peer_system(request, name):
    row = _peer_row(request, name)
    try:
        client = PeerClient(row)
        status, content_type, data = client.request("GET", "/system")
        client.close()
    except PeerError as error:
        return error_response(request, 502, str(error), orthanc=(9, "Error in the network protocol"))
    if status != 200:
        return error_response(request, 502, f"peer {name} answered GET /system with HTTP {status}",
                              orthanc=(9, "Error in the network protocol"))
    return HttpResponse(data, content_type=content_type or "application/json")


@_handle_not_found
@rest("POST")
def peer_store_straight(request, name):
    """POST the DICOM file of the body to the peer's /instances, without storing it
    here (Orthanc 1.9): the peer's answer."""
    row = _peer_row(request, name)
    with spool(request) as body:
        length = body.seek(0, 2)
        body.seek(0)
        try:
            client = PeerClient(row)
            try:
                status, content_type, data = client.request("POST", "/instances", body=body, length=length,
                                                            content_type="application/dicom")
            finally:
                client.close()
        except PeerError as error:
            return error_response(request, 502, str(error), orthanc=(9, "Error in the network protocol"))
    if status != 200:
        return error_response(request, 502, f"peer {name} answered POST /instances with HTTP {status}",
                              orthanc=(9, "Error in the network protocol"))
    return HttpResponse(data, content_type=content_type or "application/json")


@_handle_not_found
@rest("POST")
def peer_store(request, name):
    row = _peer_row(request, name)
    body = _body(request)
    send = _send(request, sends.to_peer, row, _resources_of(request, body))
    return _run_job(request, send.type, send.params, send.content, body)
"""Orthanc's metadata and attachment routes, with revisions (ETag / If-Match),
and the tag routes of instances."""

from django.http import FileResponse, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from archive import annotations, resources
from archive.roles import checks_credentials, remembered_credentials
from api.rest import orthanc_tags
from api.rest.errors import error_response, rest_view
from api.rest.bodies import spool
from archive.storage import get_storage


def _level(plural):
    return resources.LEVEL_OF_PLURAL[plural]


def _expected_revision(request):
    header = request.META.get("HTTP_IF_MATCH")
    if header is None:
        return None
    text = header.strip().strip('"')
    if not text.isdigit():
        raise ValueError(f"If-Match must be a revision number, not {header!r}")
    return int(text)


def annotation_view(view):
    """Map the annotation errors to Orthanc's statuses."""

    @rest_view
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except annotations.UnknownResource as error:
            return error_response(request, 404, f"resource {error} is not in the archive", orthanc=(17, "Unknown resource"))
        except annotations.UnknownItem as error:
            return error_response(request, 404, f"{error} does not exist", orthanc=(7, "Inexistent item"))
        except annotations.StaleRevision as error:
            return error_response(request, 409, f"{error} has changed since that revision: read it again",
                                  orthanc=(43, "The revision has changed"))
        except annotations.ReadOnlyItem as error:
            return error_response(request, 403, str(error))
        except (annotations.InvalidName, ValueError) as error:
            return error_response(request, 400, str(error))

    return csrf_exempt(wrapper)


def _with_revision(response, revision):
    response["ETag"] = f'"{revision}"'
    return response


@require_http_methods(["GET"])
@annotation_view
def metadata_list(request, plural, public_id):
    values = annotations.list_metadata(_level(plural), public_id)
    if "expand" in request.GET:
        return JsonResponse({name: item.value for name, item in values.items()})
    return JsonResponse(list(values), safe=False)


@require_http_methods(["GET", "PUT", "DELETE"])
@annotation_view
def metadata_item(request, plural, public_id, name):
    level = _level(plural)
    if request.method == "GET":
        item = annotations.get_metadata(level, public_id, name)
        return _with_revision(HttpResponse(item.value, content_type="text/plain"), item.revision)
    expected = _expected_revision(request)
    if request.method == "PUT":
        try:
            value = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("a metadata value is UTF-8 text")
        revision = annotations.set_metadata(level, public_id, name, value, expected)
        return _with_revision(JsonResponse({}), revision)
    annotations.delete_metadata(level, public_id, name, expected)
    return JsonResponse({})


@require_http_methods(["GET"])
@annotation_view
def attachment_list(request, plural, public_id):
    attachments = annotations.list_attachments(_level(plural), public_id)
    if "full" in request.GET:
        return JsonResponse({name: index for index, name in enumerate(attachments, 1)})
    return JsonResponse(list(attachments), safe=False)


@require_http_methods(["GET", "PUT", "DELETE"])
@annotation_view
def attachment_item(request, plural, public_id, name):
    level = _level(plural)
    if request.method == "GET":
        item = annotations.get_attachment(level, public_id, name)
        return _with_revision(JsonResponse(list(ATTACHMENT_PARTS), safe=False), item["revision"])
    expected = _expected_revision(request)
    if request.method == "PUT":
        with spool(request) as body:
            revision = annotations.set_attachment(level, public_id, name, body, expected)
        return _with_revision(JsonResponse({}), revision)
    annotations.delete_attachment(level, public_id, name, expected)
    return JsonResponse({})


# The GET routes below an attachment. pacsweb stores attachments uncompressed, so the
# compressed-* forms answer as the plain ones (as Orthanc with StorageCompression off).
ATTACHMENT_PARTS = ("compressed-data", "compressed-md5", "compressed-size", "data", "info", "is-compressed", "md5",
                    "size")
# Orthanc's ContentType numbers (FileContentType): 1 is the DICOM file, user attachments
# are numbered by their names (1024 and above).
DICOM_CONTENT_TYPE = 1


@require_http_methods(["POST"])
@annotation_view
def attachment_action(request, plural, public_id, name, action):
    """Orthanc's verify-md5, compress and uncompress of an attachment."""
    item = annotations.get_attachment(_level(plural), public_id, name)
    if action == "verify-md5":
        if not annotations.attachment_intact(item):
            return error_response(request, 400, f"attachment {name} of {public_id} is missing or altered: its MD5 "
                                  "is not the one computed when it was stored", orthanc=(15, "Bad file format"))
        return JsonResponse({})
    if action == "compress":
        # The storage keeps each file as received, so that it is read and sent without a
        # decompression (and compressed transfer syntaxes gain nothing from it).
        return error_response(request, 400, "pacsweb never compresses attachments: they are stored as received",
                              orthanc=(8, "Bad request"))
    return JsonResponse({})  # uncompress: every attachment is uncompressed already


@require_http_methods(["GET"])
@annotation_view
def attachment_part(request, plural, public_id, name, part):
    item = annotations.get_attachment(_level(plural), public_id, name)
    if part not in ATTACHMENT_PARTS:
        return error_response(request, 404, f"unknown attachment route {part}", orthanc=(17, "Unknown resource"))
    # Orthanc labels the DICOM file application/dicom on /data only, not on /compressed-data.
    content_type = "application/dicom" if name == "dicom" and part == "data" else "application/octet-stream"
    part = part.removeprefix("compressed-")
    if part == "data":
        response = FileResponse(get_storage().open(item["storage_key"]), content_type=content_type)
        response["Content-Length"] = str(item["size"])
        return _with_revision(response, item["revision"])
    if part == "size":
        return _with_revision(HttpResponse(str(item["size"]), content_type="text/plain"), item["revision"])
    if part == "md5":
        return _with_revision(HttpResponse(item["md5"], content_type="text/plain"), item["revision"])
    if part == "is-compressed":
        return HttpResponse("0", content_type="text/plain")
    # info: Orthanc's fields, and the revision (which Orthanc gives in the ETag only).
    content_type = DICOM_CONTENT_TYPE if name == "dicom" else int(name) if name.isdigit() else name
    return _with_revision(JsonResponse({
        "CompressedMD5": item["md5"], "CompressedSize": item["size"], "ContentType": content_type,
        "UncompressedMD5": item["md5"], "UncompressedSize": item["size"], "Uuid": resources.uuid_form(item["storage_key"]),
        "Revision": item["revision"]}), item["revision"])


def _dicom_file(request, public_id):
    """The instance's file, found (and a script's credentials checked) by one plain query:
    the ORM's lookups of the instance and of its attachments cost more than reading the
    tags. UnknownResource when the archive does not hold it."""
    item = resources.dicom_file(public_id, remembered_credentials(request))
    if item is None:
        raise annotations.UnknownResource(public_id)
    return item


@checks_credentials("GET")
@require_http_methods(["GET"])
@annotation_view
def instance_tags(request, public_id, simplified=False):
    item = _dicom_file(request, public_id)
    with get_storage().open(item["storage_key"]) as stream:
        dataset = orthanc_tags.read(stream)
    if simplified or "simplify" in request.GET:
        return JsonResponse(orthanc_tags.simplified(dataset))
    if "short" in request.GET:
        return JsonResponse(orthanc_tags.short(dataset))
    return JsonResponse(orthanc_tags.full(dataset))


@checks_credentials("GET")
@require_http_methods(["GET"])
@annotation_view
def instance_content(request, public_id, path=""):
    """Orthanc's /instances/{id}/content/gggg-eeee/index/gggg-eeee...: raw element values."""
    item = _dicom_file(request, public_id)
    with get_storage().open(item["storage_key"]) as stream:
        dataset = orthanc_tags.read(stream)
        node, raw = dataset, None
        parts = [p for p in path.split("/") if p]
        for position, part in enumerate(parts):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    return error_response(request, 404, f"no item {part} in that sequence", orthanc=(17, "Unknown resource"))
                node = node[int(part)]
                continue
            tag = orthanc_tags.parse_tag(part)
            if tag is None or tag not in node:
                return error_response(request, 404, f"no element {part}", orthanc=(17, "Unknown resource"))
            raw = node.get_item(tag)  # before node[tag] converts it: the value as written
            element = node[tag]
            node = list(element.value) if element.VR == "SQ" else element
        if isinstance(node, list):
            return JsonResponse([str(n) for n in range(len(node))], safe=False)
        if not isinstance(node, orthanc_tags.Element):
            return JsonResponse(sorted(f"{e.tag.group:04x}-{e.tag.element:04x}" for e in node), safe=False)
        return HttpResponse(orthanc_tags.raw_value(raw, node), content_type="application/octet-stream")


@require_http_methods(["GET"])
@annotation_view
def instance_frames(request, public_id):
    row = resources.MODELS[resources.Level.INSTANCE].objects.filter(public_id=public_id).values("main_dicom_tags").first()
    if row is None:
        raise annotations.UnknownResource(public_id)
    count = _frame_count(row)
    return JsonResponse(list(range(count)), safe=False)


def _frame_count(row):
    return int(str(row["main_dicom_tags"].get("NumberOfFrames") or "1").split("\\")[0] or 1)


# The routes below a frame that pacsweb answers (Orthanc also lists matlab).
FRAME_ROUTES = ["image-int16", "image-uint16", "image-uint8", "numpy", "preview", "raw", "raw.gz", "rendered"]


@require_http_methods(["GET"])
@annotation_view
def instance_frame(request, public_id, frame):
    row = resources.MODELS[resources.Level.INSTANCE].objects.filter(public_id=public_id).values("main_dicom_tags").first()
    if row is None:
        raise annotations.UnknownResource(public_id)
    # As Orthanc: any frame number; the routes below it say whether the frame exists.
    return JsonResponse(FRAME_ROUTES, safe=False)

"""Orthanc's routes that read the DICOM files below a resource: /instances-tags,
/shared-tags, /module, /studies/{id}/module-patient, /instances/{id}/header and
/series/{id}/ordered-slices.

Each answers the forms of /tags: full by default, ?simplify, ?short.
"""

import math

from django.http import JsonResponse
from django.views.decorators.http import require_GET
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

from archive import resources
from archive.models import Level
from archive.storage import get_storage
from api.rest import orthanc_tags
from api.rest.errors import error_response, rest_view

# What /module shows at each level: the attributes of the level's module in
# PS3.3, as Orthanc reads them from a file: Patient (C.7.1.1), General Study and
# Patient Study (C.7.2.1, C.7.2.2), General Series (C.7.3.1), SOP Common (C.12.1).
MODULE_TAGS = {
    Level.PATIENT: (
        "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "PatientBirthDate", "PatientBirthTime",
        "PatientSex", "OtherPatientIDs", "OtherPatientNames", "EthnicGroup", "PatientComments",
        "PatientSpeciesDescription", "PatientBreedDescription", "ResponsiblePerson", "ResponsiblePersonRole",
        "ResponsibleOrganization", "PatientIdentityRemoved", "DeidentificationMethod",
    ),
    Level.STUDY: (
        "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
        "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription",
        "PatientAge", "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory",
    ),
    Level.SERIES: (
        "Modality", "SeriesInstanceUID", "SeriesNumber", "Laterality", "SeriesDate", "SeriesTime",
        "PerformingPhysicianName", "ProtocolName", "SeriesDescription", "OperatorsName", "BodyPartExamined",
        "PatientPosition", "SmallestPixelValueInSeries", "LargestPixelValueInSeries",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
    ),
    Level.INSTANCE: (
        "SOPClassUID", "SOPInstanceUID", "SpecificCharacterSet", "InstanceCreationDate", "InstanceCreationTime",
        "InstanceCreatorUID", "TimezoneOffsetFromUTC", "InstanceNumber",
    ),
}
PIXEL_DATA = "7fe0,0010"


def _row(plural, public_id):
    level = resources.LEVEL_OF_PLURAL[plural]
    return level, resources.MODELS[level].objects.filter(public_id=public_id).first()


def _unknown(request, plural, public_id):
    return error_response(request, 404, f"{plural} {public_id} is not in the archive")


def _datasets(level, row):
    storage = get_storage()
    for public_id, key in resources.instance_files(level, row):
        with storage.open(key) as stream:
            yield public_id, orthanc_tags.read(stream)


def _form(request, answer):
    """full tags → the form the query string asks for."""
    if "simplify" in request.GET:
        return orthanc_tags.simplify(answer)
    if "short" in request.GET:
        return orthanc_tags.simplify(answer, by_tag=True)
    return answer


@require_GET
@rest_view
def instances_tags(request, plural, public_id):
    """The tags of every instance below the resource, by instance id."""
    level, row = _row(plural, public_id)
    if row is None:
        return _unknown(request, plural, public_id)
    return JsonResponse({instance_id: _form(request, orthanc_tags.full(dataset))
                         for instance_id, dataset in _datasets(level, row)})


@require_GET
@rest_view
def shared_tags(request, plural, public_id):
    """The tags whose value is the same in every instance below the resource."""
    level, row = _row(plural, public_id)
    if row is None or level == Level.INSTANCE:
        # Orthanc has no /instances/{id}/shared-tags.
        return _unknown(request, plural, public_id)
    shared = None
    for _, dataset in _datasets(level, row):
        answer = orthanc_tags.full(dataset)
        # Orthanc compares its JSON summaries of the instances, which leave the pixels out.
        answer.pop(PIXEL_DATA, None)
        if shared is None:
            shared = answer
        else:
            shared = {tag: entry for tag, entry in shared.items() if answer.get(tag) == entry}
    return JsonResponse(_form(request, shared or {}))


@require_GET
@rest_view
def module(request, plural, public_id, of=None):
    """The tags of the resource's own level (or of its patient, for
    /studies/{id}/module-patient), read from one of its instances."""
    level, row = _row(plural, public_id)
    if row is None:
        return _unknown(request, plural, public_id)
    wanted = {tag_for_keyword(k) for k in MODULE_TAGS[of or level]}
    for _, dataset in _datasets(level, row):
        answer = orthanc_tags.full(dataset)
        return JsonResponse(_form(request, {tag: entry for tag, entry in answer.items()
                                            if orthanc_tags.parse_tag(tag) in wanted}))
    return JsonResponse({})


@require_GET
@rest_view
def header(request, public_id):
    """The file meta information (group 0002) of the instance's file."""
    level, row = _row("instances", public_id)
    if row is None:
        return _unknown(request, "instances", public_id)
    for _, dataset in _datasets(level, row):
        # Orthanc leaves the binary elements (File Meta Information Version) out of the header.
        answer = {tag: entry for tag, entry in orthanc_tags.full(dataset.file_meta, meta=True).items()
                  if entry["Type"] != "Null"}
        return JsonResponse(_form(request, answer))
    return _unknown(request, "instances", public_id)


@require_GET
@rest_view
def ordered_slices(request, public_id):
    """The frames of the series in the order of their position along the normal
    of the slices ("Volume"), else of their InstanceNumber ("Sequence")."""
    level, row = _row("series", public_id)
    if row is None:
        return _unknown(request, "series", public_id)
    ordered, kind = slice_order(level, row)
    if ordered is None:
        return error_response(request, 400, "the slices of this series have neither distinct positions "
                              "nor distinct instance numbers: they cannot be ordered", orthanc=(8, "Bad request"))
    return JsonResponse({
        "Dicom": [f"/instances/{s['id']}/file" for s in ordered],
        "Slices": [f"/instances/{s['id']}/frames/{n}" for s in ordered for n in range(s["frames"])],
        "SlicesShort": [[s["id"], 0, s["frames"]] for s in ordered],
        "Type": kind,
    })


def slice_order(level, row):
    """(slices, "Volume" or "Sequence") of the series' instances in order, each slice
    {"id", "frames", ...}; (None, None) when they cannot be ordered."""
    slices = [_slice(instance_id, dataset) for instance_id, dataset in _datasets(level, row)]
    ordered, kind = _by_position(slices), "Volume"
    if ordered is None:
        ordered, kind = _by_number(slices), "Sequence"
    return (ordered, kind) if ordered is not None else (None, None)


def _numbers(value, count):
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _slice(instance_id, dataset):
    try:
        frames = int(dataset.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        frames = 1
    try:
        number = int(dataset.get("InstanceNumber"))
    except (TypeError, ValueError):
        number = None
    return {"id": instance_id, "frames": max(frames, 1), "number": number,
            "position": _numbers(dataset.get("ImagePositionPatient"), 3),
            "orientation": _numbers(dataset.get("ImageOrientationPatient"), 6)}


def _by_position(slices):
    # PS3.3 C.7.6.2.1.1: a slice's place in a volume is its position projected
    # on the normal of its orientation; all slices must share the orientation.
    if not slices or any(s["position"] is None or s["orientation"] is None for s in slices):
        return None
    first = slices[0]["orientation"]
    if any(max(abs(a - b) for a, b in zip(s["orientation"], first)) > 1e-4 for s in slices):
        return None
    row, column = first[:3], first[3:]
    normal = [row[1] * column[2] - row[2] * column[1], row[2] * column[0] - row[0] * column[2],
              row[0] * column[1] - row[1] * column[0]]
    if math.isclose(sum(n * n for n in normal), 0):
        return None
    distances = [sum(p * n for p, n in zip(s["position"], normal)) for s in slices]
    if len({round(d, 4) for d in distances}) != len(slices):
        return None
    return [s for _, s in sorted(zip(distances, slices), key=lambda pair: pair[0])]


def _by_number(slices):
    if not slices or any(s["number"] is None for s in slices) or len({s["number"] for s in slices}) != len(slices):
        return None
    return sorted(slices, key=lambda s: s["number"])

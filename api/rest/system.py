"""GET /system and GET /statistics (Orthanc-compatible)."""

from django.conf import settings
from django.db.models import Sum
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from pydicom.tag import Tag

from archive import tags
from archive.models import Attachment, Instance, Patient, Series, Study
from api.rest.errors import rest_view

# The Orthanc release whose REST API pacsweb's routes follow, and that
# release's ApiVersion (OrthancFrameworkParameters.cmake: 21 in 1.12.1). Clients
# gate features on these two fields (pyorthanc and orthanc-api-client compare
# Version with "1.x.y"), so they say the Orthanc level, and pacsweb's own
# version is PacswebVersion.
ORTHANC_VERSION = "1.12.1"
API_VERSION = 21
DATABASE_VERSION = 6


def _signature(keywords):
    # Orthanc's main DICOM tags signature: the tags a level indexes, "gggg,eeee;..."
    return ";".join(f"{Tag(k).group:04x},{Tag(k).element:04x}" for k in keywords)


MAIN_DICOM_TAGS = {"Patient": _signature(tags.PATIENT_TAGS), "Study": _signature(tags.STUDY_TAGS),
                   "Series": _signature(tags.SERIES_TAGS), "Instance": _signature(tags.INSTANCE_TAGS)}


@require_GET
@rest_view
def system(request):
    return JsonResponse(
        {
            "ApiVersion": API_VERSION,
            "CheckRevisions": True,
            "DatabaseBackendPlugin": None,
            "DatabaseServerIdentifier": settings.NODE_NAME,
            "DatabaseVersion": DATABASE_VERSION,
            "DicomAet": settings.AE_TITLE,
            "DicomPort": settings.DICOM_PORT,
            "HasLabels": True,
            "HttpPort": settings.HTTP_PORT,
            "IngestTranscoding": "",
            # Every route needs credentials (pacsweb.access): what Orthanc means by secure.
            "IsHttpServerSecure": True,
            "MainDicomTags": MAIN_DICOM_TAGS,
            # The bounds of archive.recycling (0 is Orthanc's "unlimited"; the size in MB).
            "MaximumPatientCount": settings.MAXIMUM_PATIENT_COUNT,
            "MaximumStorageMode": settings.MAXIMUM_STORAGE_MODE,
            "MaximumStorageSize": settings.MAXIMUM_STORAGE_SIZE,
            "Name": settings.NODE_NAME,
            "OverwriteInstances": False,
            "PluginsEnabled": False,
            "ReadOnly": False,
            "StorageAreaPlugin": None,
            "StorageCompression": False,
            "UserMetadata": {},
            "Version": ORTHANC_VERSION,
            # Beyond Orthanc: which product answers, its version, and which node of the cluster.
            "Product": "pacsweb",
            "PacswebVersion": settings.VERSION,
            "Node": settings.NODE_NAME,
            "DatabaseBackend": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        }
    )


@require_GET
@rest_view
def statistics(request):
    disk = Attachment.objects.aggregate(total=Sum("size"))["total"] or 0
    return JsonResponse(
        {
            "CountPatients": Patient.objects.count(),
            "CountStudies": Study.objects.count(),
            "CountSeries": Series.objects.count(),
            "CountInstances": Instance.objects.count(),
            # Orthanc writes the byte counts as strings (they overflow a JSON
            # double past 2^53) and the megabyte counts as numbers.
            "TotalDiskSize": str(disk),
            "TotalDiskSizeMB": disk // (1024 * 1024),
            "TotalUncompressedSize": str(disk),
            "TotalUncompressedSizeMB": disk // (1024 * 1024),
        }
    )

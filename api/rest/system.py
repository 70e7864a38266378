"""GET /system and GET /statistics (Orthanc-compatible)."""

from django.conf import settings
from django.db.models import Sum
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from archive.models import Attachment, Instance, Patient, Series, Study
from api.rest.errors import rest_view

# The Orthanc REST API level our routes follow (Orthanc 1.10 reports 16 in
# /system; clients such as pyorthanc read it to pick their calls).
API_VERSION = 16
DATABASE_VERSION = 6


@require_GET
@rest_view
def system(request):
    return JsonResponse(
        {
            "ApiVersion": API_VERSION,
            "CheckRevisions": True,
            "DatabaseBackendPlugin": None,
            "DatabaseVersion": DATABASE_VERSION,
            "DicomAet": settings.AE_TITLE,
            "DicomPort": settings.DICOM_PORT,
            "HttpPort": settings.HTTP_PORT,
            "IsHttpServerSecure": True,
            "MaximumPatientCount": 0,
            "MaximumStorageSize": 0,
            "Name": settings.NODE_NAME,
            "OverwriteInstances": False,
            "PluginsEnabled": False,
            "StorageAreaPlugin": None,
            "StorageCompression": False,
            "Version": settings.VERSION,
            # Beyond Orthanc: which product answers, and which node of the cluster.
            "Product": "pacsweb",
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

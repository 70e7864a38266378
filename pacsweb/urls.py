from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from api.dicomweb.wado import wado_uri
from console import ohif
from api.rest import annotations, archives, images, instances, resources, system
from api import health
from api.rest import jobs as jobs_rest, nodes as nodes_rest, security as security_rest
from api.rest import network as cluster_rest
from api.rest import worklists as worklists_rest
from api.rest import tags as tags_rest, tools

# Orthanc's JSON errors on API routes; the console's pages keep Django's.
handler400 = "api.rest.errors.bad_request"
handler403 = "api.rest.errors.permission_denied"
handler404 = "api.rest.errors.page_not_found"
handler500 = "api.rest.errors.server_error"

RESOURCE = r"(?P<plural>patients|studies|series|instances)/(?P<public_id>[^/]+)"

urlpatterns = [
    # The browser's entry is the console.
    path("", RedirectView.as_view(url="/ui/", permanent=False)),
    path("ui/", include("console.urls")),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("system", system.system),
    path("statistics", system.statistics),
    path("instances", instances.instances),
    path("instances/<str:public_id>/file", instances.file),
    re_path(r"^(?P<plural>patients|studies|series)$", resources.listing),
    re_path(r"^(?P<plural>patients|studies|series|instances)/(?P<public_id>[^/]+)$", resources.detail),
    re_path(r"^(?P<plural>patients|studies|series|instances)/(?P<public_id>[^/]+)/statistics$", resources.statistics),
    re_path(r"^(?P<plural>patients|studies|series|instances)/(?P<public_id>[^/]+)/"
            r"(?P<other>patient|study|studies|series|instances)$", resources.related),
    re_path(rf"^{RESOURCE}/metadata$", annotations.metadata_list),
    re_path(rf"^{RESOURCE}/metadata/(?P<name>[^/]+)$", annotations.metadata_item),
    re_path(rf"^{RESOURCE}/attachments$", annotations.attachment_list),
    re_path(rf"^{RESOURCE}/attachments/(?P<name>[^/]+)$", annotations.attachment_item),
    re_path(rf"^{RESOURCE}/attachments/(?P<name>[^/]+)/(?P<part>[a-z0-9-]+)$", annotations.attachment_part),
    re_path(rf"^{RESOURCE}/instances-tags$", tags_rest.instances_tags),
    re_path(rf"^{RESOURCE}/shared-tags$", tags_rest.shared_tags),
    re_path(rf"^{RESOURCE}/module$", tags_rest.module),
    re_path(r"^(?P<plural>studies)/(?P<public_id>[^/]+)/module-patient$", tags_rest.module, {"of": "Patient"}),
    path("instances/<str:public_id>/header", tags_rest.header),
    path("series/<str:public_id>/ordered-slices", tags_rest.ordered_slices),
    path("patients/<str:public_id>/protected", resources.protected),
    path("instances/<str:public_id>/pdf", images.pdf),
    re_path(r"^instances/(?P<public_id>[^/]+)/image-(?P<pixel_type>uint8|uint16|int16)$", images.raw_image),
    re_path(r"^instances/(?P<public_id>[^/]+)/frames/(?P<frame>[0-9]+)/image-(?P<pixel_type>uint8|uint16|int16)$",
            images.raw_image),
    path("instances/<str:public_id>/numpy", images.numpy_array),
    path("instances/<str:public_id>/frames/<int:frame>/numpy", images.numpy_array),
    path("instances/<str:public_id>/tags", annotations.instance_tags),
    path("instances/<str:public_id>/simplified-tags", annotations.instance_tags, {"simplified": True}),
    path("instances/<str:public_id>/content", annotations.instance_content),
    re_path(r"^instances/(?P<public_id>[^/]+)/content/(?P<path>.+)$", annotations.instance_content),
    path("instances/<str:public_id>/frames", annotations.instance_frames),
    path("instances/<str:public_id>/preview", images.image),
    path("instances/<str:public_id>/rendered", images.image, {"kind": "rendered"}),
    path("instances/<str:public_id>/frames/<int:frame>/preview", images.image),
    path("instances/<str:public_id>/frames/<int:frame>/rendered", images.image, {"kind": "rendered"}),
    re_path(r"^(?P<plural>patients|studies|series)/(?P<public_id>[^/]+)/archive$", archives.resource_archive),
    re_path(r"^(?P<plural>patients|studies|series)/(?P<public_id>[^/]+)/media$", archives.resource_archive,
            {"media": True}),
    path("tools/create-archive", archives.create_archive),
    path("tools/create-media", archives.create_archive, {"media": True}),
    path("tools/create-media-extended", archives.create_archive, {"media": True}),
    path("jobs", jobs_rest.job_list),
    path("jobs/<str:job_id>", jobs_rest.job_detail),
    path("jobs/<str:job_id>/archive", archives.job_archive),
    re_path(r"^jobs/(?P<job_id>[^/]+)/(?P<action>[a-z]+)$", jobs_rest.job_action),
    path("tools/find", resources.find),
    path("tools", tools.tools),
    path("tools/now", tools.now),
    path("tools/now-local", tools.now, {"local": True}),
    path("tools/generate-uid", tools.generate_uid_view),
    path("tools/default-encoding", tools.default_encoding),
    path("tools/accepted-transfer-syntaxes", tools.accepted_transfer_syntaxes),
    path("tools/log-level", tools.log_level),
    re_path(r"^tools/log-level-(?P<category>dicom|generic|http|jobs|lua|plugins|sqlite)$", tools.log_level),
    path("tools/invalidate-tags", tools.invalidate_tags),
    path("tools/metrics", tools.metrics_enabled),
    path("tools/metrics-prometheus", tools.metrics_prometheus),
    path("tools/lookup", tools.lookup),
    path("tools/bulk-content", tools.bulk_content),
    path("tools/count-resources", tools.count_resources),
    path("tools/dicom-echo", cluster_rest.dicom_echo),
    path("plugins", tools.plugins),
    path("exports", tools.exports),
    path("changes", resources.changes),
    path("dicom-web/", include("api.dicomweb.urls")),
    path("wado", wado_uri),
    # The OHIF viewer (console/ohif.py), signed in with the console's session.
    path("ohif/", ohif.viewer),
    re_path(r"^ohif/(?P<path>.+)$", ohif.viewer),
    path("modalities", cluster_rest.modalities),
    path("modalities/<str:name>", cluster_rest.modality),
    path("modalities/<str:name>/configuration", cluster_rest.modality_configuration),
    path("modalities/<str:name>/echo", cluster_rest.modality_echo),
    path("modalities/<str:name>/store", cluster_rest.modality_store),
    path("modalities/<str:name>/store-straight", cluster_rest.modality_store_straight),
    re_path(r"^modalities/(?P<name>[^/]+)/find-(?P<level>patient|study|series|instance)$",
            cluster_rest.modality_find_level),
    path("modalities/<str:name>/find-worklist", cluster_rest.modality_find_worklist),
    path("modalities/<str:name>/query", cluster_rest.modality_query),
    path("modalities/<str:name>/move", cluster_rest.modality_move),
    path("modalities/<str:name>/get", cluster_rest.modality_get),
    path("audit", security_rest.audit_list),
    path("tokens", security_rest.token_list),
    path("tokens/<str:prefix>", security_rest.token_detail),
    path("metrics", security_rest.metrics_view),
    path("cluster/nodes", nodes_rest.node_list),
    path("cluster/nodes/<str:name>/drain", nodes_rest.node_drain, {"draining": True}),
    path("cluster/nodes/<str:name>/undrain", nodes_rest.node_drain, {"draining": False}),
    path("peers", cluster_rest.peers),
    path("peers/<str:name>", cluster_rest.peer),
    path("peers/<str:name>/configuration", cluster_rest.peer_configuration),
    path("peers/<str:name>/system", cluster_rest.peer_system),
    path("peers/<str:name>/store", cluster_rest.peer_store),
    path("queries", cluster_rest.query_list),
    path("queries/<str:query_id>", cluster_rest.query_detail),
    path("queries/<str:query_id>/answers", cluster_rest.query_answers),
    path("queries/<str:query_id>/answers/<int:index>/content", cluster_rest.query_answer_content),
    path("queries/<str:query_id>/answers/<int:index>/retrieve", cluster_rest.query_retrieve),
    path("queries/<str:query_id>/retrieve", cluster_rest.query_retrieve),
    path("queries/<str:query_id>/<str:attribute>", cluster_rest.query_attribute),
    path("worklists", worklists_rest.worklist_list),
    path("worklists/<int:item_id>", worklists_rest.worklist_item),
]

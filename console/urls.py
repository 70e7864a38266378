"""The console's routes, under /ui/ (pacsweb/urls.py includes them)."""

from django.urls import path, re_path

from archive.roles import OPEN, allow
from console.views import (auth, changes, cluster, editing, home, jobs, network, retrieve, security, studies,
                           upload, users, worklist)

app_name = "console"

urlpatterns = [
    path("", home.home, name="home"),
    path("login/", allow(GET=OPEN, POST=OPEN)(auth.LoginPage.as_view()), name="login"),
    path("logout/", allow(GET=None, POST=OPEN)(auth.LogoutPage.as_view()), name="logout"),
    path("studies/", studies.study_list, name="studies"),
    path("studies/bulk/download", studies.bulk_download, name="studies-download"),
    path("studies/bulk/send", studies.bulk_send, name="studies-send"),
    path("studies/bulk/delete", studies.bulk_delete, name="studies-delete"),
    path("studies/bulk/label", editing.bulk_label, name="studies-label"),
    path("studies/bulk/anonymize", editing.bulk_anonymize, name="studies-anonymize"),
    path("studies/<str:public_id>/", studies.study_detail, name="study"),
    path("studies/<str:public_id>/delete", studies.study_delete, name="study-delete"),
    path("studies/<str:public_id>/prepare", studies.study_prepare, name="study-prepare"),
    path("studies/<str:public_id>/send", studies.study_send, name="study-send"),
    path("studies/<str:public_id>/labels", editing.study_labels, name="study-labels"),
    path("studies/<str:public_id>/modify", editing.study_modify, name="study-modify"),
    path("studies/<str:public_id>/anonymize", editing.study_anonymize, name="study-anonymize"),
    path("patients/", studies.patient_list, name="patients"),
    path("patients/<str:public_id>/", studies.patient_detail, name="patient"),
    path("patients/<str:public_id>/modify", editing.patient_modify, name="patient-modify"),
    path("patients/<str:public_id>/anonymize", editing.patient_anonymize, name="patient-anonymize"),
    path("open/<str:level>/<str:public_id>", studies.open_resource, name="open"),
    path("instances/<str:public_id>/tags", studies.instance_tags, name="instance-tags"),
    path("instances/<str:public_id>/frames/<int:frame>/pixels", studies.frame_pixels, name="frame-pixels"),
    path("upload/", upload.upload_page, name="upload"),
    path("upload/file", upload.upload_file, name="upload-file"),
    path("retrieve/", retrieve.query_page, name="retrieve"),
    path("retrieve/studies", retrieve.retrieve, name="retrieve-studies"),
    path("jobs/", jobs.job_list, name="jobs"),
    path("jobs/<str:job_id>/progress", jobs.job_progress, name="job-progress"),
    path("jobs/<str:job_id>/<str:action>", jobs.job_action, name="job-action"),
    path("cluster/", cluster.cluster_page, name="cluster"),
    path("cluster/<str:node>/<str:action>", cluster.node_action, name="node-action"),
    path("modalities/", network.modality_list, name="modalities"),
    path("modalities/new", network.modality_edit, name="modality-new"),
    path("modalities/<str:name>/edit", network.modality_edit, name="modality-edit"),
    path("modalities/<str:name>/delete", network.modality_delete, name="modality-delete"),
    path("modalities/<str:name>/echo", network.modality_echo, name="modality-echo"),
    path("peers/", network.peer_list, name="peers"),
    path("peers/new", network.peer_edit, name="peer-new"),
    path("peers/<str:name>/edit", network.peer_edit, name="peer-edit"),
    path("peers/<str:name>/delete", network.peer_delete, name="peer-delete"),
    path("peers/<str:name>/test", network.peer_test, name="peer-test"),
    path("worklist/", worklist.worklist_list, name="worklist"),
    path("worklist/new", worklist.worklist_new, name="worklist-new"),
    path("worklist/<int:item_id>/cancel", worklist.worklist_cancel, name="worklist-cancel"),
    path("performed/", worklist.performed_list, name="performed"),
    path("changes/", changes.change_list, name="changes"),
    path("audit/", security.audit_list, name="audit"),
    path("users/", users.user_list, name="users"),
    path("users/<str:username>/role", users.user_role, name="user-role"),
    path("users/<str:username>/active", users.user_active, name="user-active"),
    path("users/<str:username>/password", users.user_password, name="user-password"),
    path("tokens/", security.token_list, name="tokens"),
    path("tokens/<str:prefix>/revoke", security.token_revoke, name="token-revoke"),
    # Anything else under /ui/: the console's own "not found" page (or the address with its slash).
    re_path(r"^.*$", home.not_found, name="not-found"),
]


def route_roles():
    """{route pattern: {"GET": role, "POST": role}} of every console route (None:
    a route whose view declares no roles)."""
    return {str(pattern.pattern): {method: pattern.callback.roles.get(method) for method in ("GET", "POST")}
            if hasattr(pattern.callback, "roles") else None for pattern in urlpatterns}

"""The archive's models: the index of the DICOM hierarchy, the network
configuration, the audit trail and API tokens."""

from archive.models.index import (  # noqa: F401
    Attachment, Change, ChangeType, FileDeletion, Instance, Level, Metadata, Patient, Resource, Series, Study,
)
from archive.models.network import DicomQuery, Modality, Peer  # noqa: F401
from archive.models.security import ApiToken, AuditEvent  # noqa: F401

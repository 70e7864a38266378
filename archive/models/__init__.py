"""The archive's models: the index of the DICOM hierarchy, the network
configuration, the audit trail and API tokens, the hospital workflow."""

from archive.models.index import (  # noqa: F401
    Attachment, Change, ChangeType, FileDeletion, Instance, Label, Level, Metadata, Patient, Resource, Series, Study,
)
from archive.models.network import DicomQuery, Modality, Peer  # noqa: F401
from archive.models.security import ApiToken, AuditEvent  # noqa: F401
from archive.models.workflow import (  # noqa: F401
    Hl7Message, PerformedStep, StepStatus, StorageCommitment, WorklistItem,
)

"""The one exception hierarchy of the core.

Every failure a caller can act on has its own type here; each transport maps
them once (api/rest/errors.py to HTTP statuses and Orthanc's JSON errors,
dicom/scp.py to DIMSE statuses, console/access.py to pages). The modules that
raise them re-export their own (`ingest.RejectedInstance` is this one).
"""


class ArchiveError(Exception):
    """Something the archive refused or could not do; the message says what."""


class CredentialsRefused(Exception):
    """The credentials a write or a read was made on no longer hold when its own
    statement checked them (the account was disabled, its password changed, its role
    taken away): nothing was written or answered. Not an ArchiveError on purpose: it ends the whole
    request, where a handler of ArchiveError (a ZIP's member, a STOW-RS part)
    would record it against one instance and go on."""


# --- input -------------------------------------------------------------------


class RejectedInstance(ArchiveError):
    """The input cannot be stored as it is; the message says why. Nothing was written."""


class NotDicom(RejectedInstance):
    """The input is not a DICOM instance at all (no DICOM data set, or a DICOMDIR):
    refused alone, skipped inside a ZIP as Orthanc does."""


class ConflictingInstance(RejectedInstance):
    """The SOP Instance UID is already stored under another patient, study or series."""


class BodyTooLarge(ArchiveError):
    """The input goes past PACS_MAX_UPLOAD_MB."""


class UnsupportedEncoding(ArchiveError):
    """The input comes in an encoding (an HTTP Content-Encoding) the archive cannot decode."""


class BadEncoding(RejectedInstance):
    """The input is not valid data of its declared encoding (a broken gzip stream)."""


class BodyTooSlow(ArchiveError):
    """The client stopped sending its input for PACS_CLIENT_TIMEOUT seconds."""


class InvalidQuery(ArchiveError):
    """The query cannot be run as given (unknown level, malformed range)."""


class InvalidModality(ArchiveError):
    """A modality definition that cannot be used; the message says why."""


class InvalidPeer(ArchiveError):
    """A peer definition that cannot be used; the message says why."""


class InvalidName(ArchiveError):
    """A metadata or attachment name outside the ones a user may write."""


class InvalidAccount(ArchiveError):
    """A user account change that cannot be applied: a name taken or malformed, a
    password the rules refuse, an unknown role, or the last administrator removed."""


class InvalidLabel(ArchiveError):
    """A label name Orthanc would refuse: 1 to 64 letters, digits, '_' or '-'."""


class InvalidOrder(ArchiveError):
    """An order (from the RIS over HL7, or over REST) that cannot be applied as given:
    a key is missing or a value is not one the worklist knows; the message says which."""


# --- what is (not) there -------------------------------------------------------


class UnknownResource(ArchiveError):
    """A patient, study, series or instance that is not in the archive."""


class UnknownItem(ArchiveError):
    """A metadata item or attachment the resource does not have."""


class UnknownOrder(ArchiveError):
    """A cancel, discontinue or status change of an order the worklist does not hold."""


class ReadOnlyItem(ArchiveError):
    """An item the archive keeps itself (the DICOM file, its computed metadata)."""


class StaleRevision(ArchiveError):
    """The If-Match revision is not the current one: someone else wrote first."""


# --- the machinery -------------------------------------------------------------


class StorageError(ArchiveError):
    """The storage area could not complete an operation (disk full, unreachable mount)."""


class StorageFull(StorageError):
    """PACS_MAXIMUM_STORAGE_SIZE or PACS_MAXIMUM_PATIENT_COUNT is reached and nothing may be
    recycled (Reject mode, or every other patient is protected). Nothing was stored."""


class MissingFile(StorageError):
    """No file is stored under the key."""


class UnsyncedCommit(StorageError):
    """A unit of work committed but its commit could not be synced to the disk: what it
    wrote is in the index (and may be read) yet might not outlast a power loss. The
    caller must not undo what the commit names, files included."""


class DatabaseBusy(ArchiveError):
    """The unit of work still conflicted after PACS_TX_RETRIES replays.

    Answered 503 with Retry-After over HTTP, 0xA700 over DICOM.
    """

    retry_after = 1


class RenderError(ArchiveError):
    """The pixel data cannot be rendered (no image, a codec that is missing, corrupt data)."""


class NoSuchFrame(RenderError):
    """The frame asked for is not in the instance."""


class TranscodeError(ArchiveError):
    """The pixel data cannot be converted to the transfer syntax asked for (no codec, corrupt data, lossy not asked)."""


class DicomNetworkError(ArchiveError):
    """The remote AE could not be reached, refused the association, or failed the operation."""


# --- performed procedure steps and storage commitment --------------------------


class InvalidPerformedStep(ArchiveError):
    """A performed procedure step attribute with a value the step cannot take (a
    status other than IN PROGRESS at creation, an unknown status)."""


class DuplicatePerformedStep(ArchiveError):
    """A performed procedure step with this SOP Instance UID exists already."""


class UnknownPerformedStep(ArchiveError):
    """No performed procedure step has this SOP Instance UID."""


class FinalPerformedStep(ArchiveError):
    """The step is COMPLETED or DISCONTINUED: it may no longer be updated (PS3.4 F.7.2.2.3)."""


class InvalidCommitmentRequest(ArchiveError):
    """A storage commitment request without a Transaction UID or without references."""

"""STOW-RS (PS3.18 §10.5): store the DICOM parts of a multipart/related request body.

The body is spooled to a temporary file that vanishes when closed, parsed
there, and checked whole before anything is stored: a body that is cut short
(400) or carries something other than DICOM (415) stores nothing. Each part then
goes through the one ingest path, read in place from the spooled body.
"""

import io
import logging
from dataclasses import dataclass

from django.utils.http import parse_header_parameters

from archive.roles import UPLOADER, allow, checks_credentials
from archive import ingest
from api.dicomweb import dicom_json_response, studies_url
from api.rest.errors import error_response, rest_view
from api.rest.bodies import spool, upload_origin
from archive.errors import BodyTooLarge
from archive.storage import CHUNK, StorageError
from archive.db import DatabaseBusy

log = logging.getLogger(__name__)

DICOM = "application/dicom"
MAX_PART_HEADER = 16 * 1024
# PS3.18 Annex I, Table I.2-2 (Failure Reason values).
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
PROCESSING_FAILURE = 0x0110


class BrokenMultipart(Exception):
    """The body is not a well-formed multipart body (RFC 2046 §5.1)."""


class UnsupportedMedia(Exception):
    """The request or one of its parts is not application/dicom."""


@dataclass(frozen=True)
class Part:
    headers: dict
    start: int
    end: int


@dataclass(frozen=True)
class Outcome:
    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str = ""
    failure: int | None = None
    reason: str = ""


@checks_credentials("POST")
@allow(POST=UPLOADER)
@rest_view
def store(request, study=None):
    """POST /studies and /studies/{study}: answer with the Store Instances Response (PS3.18 Annex I)."""
    try:
        boundary = _boundary(request.META.get("CONTENT_TYPE", ""))
        with spool(request) as body:
            parts = parse(body, boundary)
            _check_media_types(request.META["CONTENT_TYPE"], parts)
            origin = upload_origin(request)
            base = studies_url(request)
            outcomes = [_store_part(_PartReader(body, part), study, origin, base) for part in parts]
    except UnsupportedMedia as error:
        return error_response(request, 415, str(error))
    except BrokenMultipart as error:
        return error_response(request, 400, f"the multipart body is broken: {error}")
    except BodyTooLarge as error:
        return error_response(request, 413, str(error))
    return _answer(request, outcomes, study)


def _boundary(content_type):
    media_type, params = parse_header_parameters(content_type)
    if media_type != "multipart/related":
        raise UnsupportedMedia(f'STOW-RS takes multipart/related; type="{DICOM}", not {media_type or "no media type"}')
    kind = params.get("type")
    if kind is not None and kind.lower() != DICOM:
        # The metadata + bulk data forms (application/dicom+json, +xml) are not supported.
        raise UnsupportedMedia(f'STOW-RS here takes multipart/related; type="{DICOM}", not type="{kind}"')
    if not params.get("boundary"):
        raise BrokenMultipart("the Content-Type has no boundary parameter")
    return params["boundary"].encode("latin-1")


def _check_media_types(content_type, parts):
    # Without a type parameter each part must say it is DICOM; with it, a part
    # without a Content-Type is of that type (RFC 2387 §3.1).
    _, params = parse_header_parameters(content_type)
    declared = "type" in params
    for index, part in enumerate(parts, start=1):
        media_type, _ = parse_header_parameters(part.headers.get("content-type", ""))
        if media_type != DICOM and not (declared and not media_type):
            raise UnsupportedMedia(f"part {index} is {media_type or 'of no declared type'}, not {DICOM}")


# --- multipart/related --------------------------------------------------------


def parse(body, boundary):
    """The parts of a multipart body held in a seekable file: their headers and byte ranges."""
    delimiters = list(_delimiters(body, b"\r\n--" + boundary))
    if not delimiters:
        raise BrokenMultipart("no part starts with the boundary given in the Content-Type")
    parts = []
    for position, following in zip(delimiters, delimiters[1:] + [None]):
        body.seek(position + len(boundary) + 4)
        if body.read(2) == b"--":  # the close delimiter
            if not parts:
                raise BrokenMultipart("it holds no part")
            return parts
        if following is None:
            break
        headers, start = _part_headers(body, position + len(boundary) + 4)
        if start > following:
            raise BrokenMultipart(f"the headers of part {len(parts) + 1} run into the next part")
        parts.append(Part(headers, start, following))
    raise BrokenMultipart("it ends before the closing boundary: the upload was cut short")


def _delimiters(body, delimiter):
    """Offsets of every CRLF--boundary, read as if the body began with CRLF:
    the first boundary may open the body without one (RFC 2046 §5.1.1)."""
    body.seek(0)
    # Less than a whole delimiter is carried from one chunk to the next: a delimiter
    # cut in two by a chunk's edge is found in the carry and the next chunk's start,
    # without copying the whole chunk (a 0.5 MB part was copied once more for it).
    carry, offset = b"\r\n", 0  # offset: where in the body the next chunk starts
    size = len(delimiter)
    while True:
        chunk = body.read(CHUNK)
        edge = carry + chunk[:size - 1]
        found = edge.find(delimiter)
        resume = 0  # where in the chunk the search goes on (delimiters do not overlap)
        while found >= 0:
            yield offset - len(carry) + found
            resume = found + size - len(carry)
            found = edge.find(delimiter, found + size)
        found = chunk.find(delimiter, resume)
        while found >= 0:
            yield offset + found
            found = chunk.find(delimiter, found + size)
        if not chunk:
            return
        carry = (carry + chunk)[-(size - 1):] if len(chunk) < size - 1 else chunk[len(chunk) - size + 1:]
        offset += len(chunk)


def _part_headers(body, position):
    """(headers with lower-case names, offset of the content) of the part whose boundary line ends at position."""
    body.seek(position)
    block = body.read(MAX_PART_HEADER)
    line_end = block.find(b"\r\n")
    # Transport padding (spaces, tabs) may follow the boundary (RFC 2046 §5.1.1).
    if line_end < 0 or block[:line_end].strip(b" \t"):
        raise BrokenMultipart("a boundary line carries something other than padding")
    if block[line_end:line_end + 4] == b"\r\n\r\n":
        return {}, position + line_end + 4
    head_end = block.find(b"\r\n\r\n", line_end)
    if head_end < 0:
        raise BrokenMultipart(f"the headers of a part do not end within {MAX_PART_HEADER} bytes")
    headers = {}
    for line in block[line_end + 2:head_end].decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise BrokenMultipart(f"a part header is not 'Name: value': {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers, position + head_end + 4


class _PartReader(io.RawIOBase):
    """One part of the spooled body, seen as a file of its own (what ingest.store reads)."""

    def __init__(self, body, part):
        self._body = body
        self._start = part.start
        self._end = part.end
        self._position = 0
        self._whole = None

    def read(self, size=-1):
        # Straight from the body: RawIOBase's read() goes through readinto() and
        # copies every byte three times (with a buffer of the size asked, zeroed first),
        # which made a 0.5 MB part cost ~1 ms of CPU more than the same file over REST.
        # A part read whole (the header's reading, then the storage's) is copied once.
        left = self._end - self._start - self._position
        if size is None or size < 0 or size > left:
            size = left
        if size <= 0:
            return b""
        whole = self._position == 0 and size == self._end - self._start
        if whole and self._whole is not None:
            data = self._whole
        else:
            self._body.seek(self._start + self._position)
            data = self._body.read(size)
            if whole:
                self._whole = data
        self._position += len(data)
        return data

    def readall(self):
        return self.read()

    def readinto(self, buffer):
        size = min(len(buffer), self._end - self._start - self._position)
        if size <= 0:
            return 0
        self._body.seek(self._start + self._position)
        data = self._body.read(size)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._end - self._start}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self):
        return self._position

    def readable(self):
        return True

    def seekable(self):
        return True


# --- storing -----------------------------------------------------------------


def _store_part(part, study, origin, base):
    """Store one part; an Outcome says how it went (PS3.18 Annex I)."""
    # The header is read first, and handed to store(): the UIDs decide whether
    # the part may be stored at all, and the answer names them.
    try:
        parsed = ingest.parse(part, origin)
    except ingest.RejectedInstance as error:
        return Outcome("", "", failure=CANNOT_UNDERSTAND, reason=str(error))
    if study and parsed.study_uid != study:
        # PS3.18 §10.5: with a study in the path, every instance must belong to it.
        return Outcome(parsed.sop_class_uid, parsed.sop_instance_uid, failure=DOES_NOT_MATCH,
                       reason=f"the instance belongs to study {parsed.study_uid}, not {study}")
    part.seek(0)
    try:
        ingest.store(part, origin, parsed)
    except ingest.ConflictingInstance as error:
        # Annex I has no code for "this UID already names another object".
        failure, reason = PROCESSING_FAILURE, str(error)
    except ingest.RejectedInstance as error:
        failure, reason = CANNOT_UNDERSTAND, str(error)
    except (StorageError, DatabaseBusy) as error:
        log.warning("STOW-RS could not store %s: %s", parsed.sop_instance_uid, error)
        failure, reason = OUT_OF_RESOURCES, str(error) or type(error).__name__
    else:
        url = f"{base}/{parsed.study_uid}/series/{parsed.series_uid}/instances/{parsed.sop_instance_uid}"
        return Outcome(parsed.sop_class_uid, parsed.sop_instance_uid, retrieve_url=url)
    return Outcome(parsed.sop_class_uid, parsed.sop_instance_uid, failure=failure, reason=reason)


def _answer(request, outcomes, study):
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    # The Store Instances Response in DICOM JSON (PS3.18 F.2), written directly as
    # pydicom's conversion of the Dataset wrote it (a test compares, the order of
    # the attributes too), at a tenth of its cost per part.
    answer = {}
    if study:
        answer[RETRIEVE_URL] = _attribute("UR", f"{studies_url(request)}/{study}")
    if stored:
        answer[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_item(o) for o in stored]}
    if failed:
        answer[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_item(o) for o in failed]}
    # PS3.18 §10.5.3: 200 all stored, 202 some, 409 none.
    status = 200 if not failed else 202 if stored else 409
    response = dicom_json_response(answer, status=status)
    if failed:
        # The first failure reasons in words, for people reading logs (Annex I has
        # codes only, which the body carries for every part). Bounded: one entry per
        # failed part made a header that proxies refuse (HAProxy: 502 from 300 parts).
        warnings = [_warning(o) for o in failed[:WARNINGS_SHOWN]]
        if len(failed) > WARNINGS_SHOWN:
            warnings.append(f'299 pacsweb "{len(failed) - WARNINGS_SHOWN} more parts failed; '
                            'FailedSOPSequence in the body lists each with its FailureReason"')
        response["Warning"] = ", ".join(warnings)
    return response


WARNINGS_SHOWN = 3
WARNING_LENGTH = 300


def _warning(outcome):
    text = " ".join(f"{outcome.sop_instance_uid or 'a part'}: {outcome.reason}".replace('"', "'").split())
    return '299 pacsweb "' + (text[:WARNING_LENGTH] + "..." if len(text) > WARNING_LENGTH else text) + '"'


RETRIEVE_URL, FAILED_SOP_SEQUENCE, REFERENCED_SOP_SEQUENCE = "00081190", "00081198", "00081199"


def _item(outcome):
    item = {"00081150": _attribute("UI", outcome.sop_class_uid),
            "00081155": _attribute("UI", outcome.sop_instance_uid)}
    if outcome.failure is None:
        item[RETRIEVE_URL] = _attribute("UR", outcome.retrieve_url)
    else:
        item["00081197"] = _attribute("US", outcome.failure)
    return item


def _attribute(vr, value):
    return {"vr": vr, "Value": [value]} if value not in ("", None) else {"vr": vr}

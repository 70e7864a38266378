"""Orthanc-compatible public identifiers.

The Orthanc Book ("Orthanc identifiers"): a resource's id is the SHA-1 of the
DICOM identifiers from the patient down to its level, joined by "|", written as
five groups of eight hexadecimal digits. The same file gets the same ids in
Orthanc and in pacsweb, so links and scripts carry over.
"""

import hashlib


def _hash(*parts):
    digest = hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def patient_public_id(patient_id):
    return _hash(patient_id)


def study_public_id(patient_id, study_uid):
    return _hash(patient_id, study_uid)


def series_public_id(patient_id, study_uid, series_uid):
    return _hash(patient_id, study_uid, series_uid)


def instance_public_id(patient_id, study_uid, series_uid, sop_instance_uid):
    return _hash(patient_id, study_uid, series_uid, sop_instance_uid)

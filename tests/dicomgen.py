"""DICOM files made with pydicom for tests and benchmarks.

Everything is deterministic given its arguments, so two processes asked for the
same SOP Instance UID produce byte-identical files (exact duplicates).
"""

import hashlib
import io

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1401."


def uid(*parts):
    """A valid UID derived from the parts (the same parts give the same UID)."""
    return generate_uid(prefix=ROOT, entropy_srcs=[str(p) for p in parts])


def make_instance(
    *,
    patient_id="PACS-0001",
    patient_name="DOE^JANE",
    study_uid=None,
    series_uid=None,
    sop_uid=None,
    instance_number=1,
    rows=64,
    columns=64,
    modality="CT",
    study_description="CT CHEST",
    series_description="AXIAL 1mm",
    accession_number="ACC0001",
    study_date="20260115",
    omit=(),
    **extra,
):
    """A CT image as Part 10 bytes (explicit VR little endian, 16-bit pixels)."""
    study_uid = study_uid or uid(patient_id, "study")
    series_uid = series_uid or uid(study_uid, "series")
    sop_uid = sop_uid or uid(series_uid, instance_number)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "PACSWEB TEST"
    ds.InstitutionName = "General Hospital"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [-125.0, -125.0, float(instance_number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.PixelData = _pixels(sop_uid, rows * columns * 2)
    for keyword in omit:
        if keyword in ds:
            delattr(ds, keyword)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _pixels(seed, size):
    # Cheap, deterministic, not all-zero (so a compressor could not cheat).
    block = hashlib.sha256(seed.encode()).digest() * 64
    return (block * (size // len(block) + 1))[:size]


def pydicom_test_files():
    """The real-world files shipped inside the pydicom wheel (odd ones included).

    Called without a pattern, get_testdata_files() lists only what is on disk; with
    one it would try to download pydicom's external data set.
    """
    import os

    from pydicom.data import get_testdata_files

    return sorted(p for p in get_testdata_files() if os.path.isfile(p))


def make_ultrasound_jpeg(*, patient_id="US-0001", patient_name="SONO^ANNA", study_uid=None, frames=20, size=256):
    """An Ultrasound Multi-frame Image as Part 10 bytes: `frames` RGB frames, each JPEG baseline, YBR_FULL_422.

    What a colour ultrasound cine loop looks like on the wire (pydicom's test
    files have none): each frame its own JPEG codestream with 4:2:2 chroma, a
    bright arc sweeping across a coloured gradient so every frame differs.
    """
    import numpy as np
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage

    study_uid = study_uid or uid(patient_id, "us-study")
    series_uid = uid(study_uid, "us-series")
    sop_uid = uid(series_uid, "us-instance")
    y, x = np.mgrid[0:size, 0:size]
    codestreams = []
    for number in range(frames):
        angle = np.pi * (number + 0.5) / frames
        radius = np.hypot(x - size / 2, y)
        beam = np.abs(np.arctan2(y, x - size / 2) - angle) < 0.15
        frame = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 255 * number // frames)], axis=-1)
        frame[beam & (radius < size * 0.9)] = (255, 255, 160)
        out = io.BytesIO()
        # subsampling=1 is 4:2:2, what YBR_FULL_422 declares (PS3.5 §8.2.1).
        Image.fromarray(frame.astype(np.uint8), "RGB").save(out, "JPEG", quality=90, subsampling=1)
        codestreams.append(out.getvalue())

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate, ds.StudyTime = "20260115", "101500"
    ds.AccessionNumber = "US0001"
    ds.Modality = "US"
    ds.Manufacturer = "PACSWEB TEST"
    ds.StudyDescription, ds.SeriesDescription = "US ABDOMEN", "CINE"
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "19800101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = frames
    ds.FrameTime = 33.3
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate(codestreams)
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()

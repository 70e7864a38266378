"""DICOM test data for the console: a small CT series whose slices show a phantom.

tests.dicomgen.make_instance writes the headers; the pixel data is replaced by a
disc of "soft tissue" holding a smaller "bone" disc and an "air" hole that move
from slice to slice, so a window change and a slice change both show.
"""

import io

import numpy as np
import pydicom

from tests.dicomgen import make_instance, uid


def phantom_pixels(index, count, size=64):
    """Stored values (HU + 1024) of slice `index` of `count`."""
    y, x = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    radius = size * 0.42
    image = np.full((size, size), -1000.0)  # air
    image[(x - centre) ** 2 + (y - centre) ** 2 <= radius ** 2] = 40.0  # soft tissue
    image += (x / size) * 60  # a gentle gradient inside the tissue
    shift = (index - count / 2) * size * 0.03
    bone = (x - centre - size * 0.15 - shift) ** 2 + (y - centre) ** 2 <= (size * 0.12) ** 2
    image[bone] = 700.0 + index * 20
    hole = (x - centre + size * 0.18) ** 2 + (y - centre + shift) ** 2 <= (size * 0.09) ** 2
    image[hole] = -700.0
    return np.clip(image + 1024, 0, 4095).astype(np.uint16)


def ct_series(tag, count=6, patient_name="DOE^JANE", patient_id=None, study_description="CT CHEST",
              series_description="AXIAL 1mm", size=64, **kwargs):
    """Part 10 files of one CT series of `count` slices with phantom pixels."""
    patient_id = patient_id or f"P-{tag}"
    study = uid(tag, "study")
    series = uid(tag, "series")
    files = []
    for n in range(count):
        data = make_instance(patient_id=patient_id, patient_name=patient_name, study_uid=study, series_uid=series,
                             sop_uid=uid(tag, "sop", n), instance_number=n + 1, rows=size, columns=size,
                             study_description=study_description, series_description=series_description, **kwargs)
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.PixelData = phantom_pixels(n, count, size).tobytes()
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return files


def multiframe(tag, frames=3, size=64, **kwargs):
    """One multi-frame CT instance (its own series) whose frames are phantom slices."""
    data = make_instance(patient_id=kwargs.pop("patient_id", f"P-{tag}"), study_uid=kwargs.pop("study_uid", None)
                         or uid(tag, "study"), series_uid=uid(tag, "multiframe"), sop_uid=uid(tag, "multiframe", 0),
                         rows=size, columns=size, NumberOfFrames=frames, series_description="MULTIFRAME",
                         SeriesNumber=9, **kwargs)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.PixelData = b"".join(phantom_pixels(n, frames, size).tobytes() for n in range(frames))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()

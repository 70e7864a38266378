"""dicom.scp.part10: a C-STORE's data set with the file meta pynetdicom writes, written
without pynetdicom's FileMetaDataset: the same bytes."""

import io

import pytest
from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.events import Event
from pynetdicom.presentation import build_context

from dicom.scp import file_meta, part10

SOP_CLASSES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.77.1.6"]
INSTANCES = ["1.2.3", "1.2.34", "2.25.1234567890123456789012345678901234567890",
             "1.2.826.0.1.3680043.8.498." + "1" * 38, "1.2.826.0.1.3680043.8.498." + "1" * 37]


@pytest.mark.parametrize("syntax", ALL_TRANSFER_SYNTAXES)
def test_the_file_meta_is_pynetdicoms(syntax):
    for sop_class in SOP_CLASSES:
        for instance in INSTANCES:
            expected = encode_file_meta(create_file_meta(sop_class_uid=UID(sop_class), sop_instance_uid=UID(instance),
                                                         transfer_syntax=UID(syntax)))
            assert file_meta(sop_class, instance, syntax) == expected, (sop_class, instance, syntax)


def _event(sop_class, instance, syntax, data=b"\x08\x00\x16\x00\x02\x00\x00\x001\x00"):
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = instance
    request.DataSet = io.BytesIO(data)
    context = build_context(sop_class, syntax)
    context.context_id = 1
    return Event(None, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple})


@pytest.mark.parametrize("instance", INSTANCES + ["1.2.3.4 ", "1.2.03.x4"])
def test_a_received_instance_is_the_file_pynetdicom_writes(instance):
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"):
        event = _event(SOP_CLASSES[0], instance, syntax)
        assert part10(event) == event.encoded_dataset(include_meta=True)

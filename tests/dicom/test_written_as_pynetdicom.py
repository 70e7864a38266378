"""What the listener writes itself where pynetdicom would build pydicom Datasets (a
received instance's file meta, a C-STORE response's command set): the same bytes."""

import io

import pytest
from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.events import Event
from pynetdicom.presentation import build_context

from dicom.scp import file_meta, part10, store_response

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


@pytest.mark.parametrize("status", [0x0000, 0x0001, 0x0107, 0x0116, 0x0124, 0xA700, 0xA900, 0xB000, 0xC000, 0xFFFF])
def test_a_store_response_is_the_command_set_pynetdicom_writes(status):
    for message_id in (1, 2, 255, 256, 65535):
        for sop_class in (None, *SOP_CLASSES):
            for instance in (None, *INSTANCES):
                response = C_STORE()
                response.MessageIDBeingRespondedTo = message_id
                response.Status = status
                if sop_class:
                    response.AffectedSOPClassUID = sop_class
                if instance:
                    response.AffectedSOPInstanceUID = instance
                message = C_STORE_RSP()
                message.primitive_to_message(response)
                [pdata] = message.encode_msg(1, 16384)
                [(context_id, value)] = pdata.presentation_data_value_list
                assert value == b"\x03" + store_response(response), (status, message_id, sop_class, instance)


def test_a_store_response_with_more_is_left_to_pynetdicom():
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 1
    response.Status = 0xC000
    response.ErrorComment = "cannot understand"
    assert store_response(response) is None
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = SOP_CLASSES[0]
    assert store_response(request) is None  # a request, not a response

"""Which storage SOP classes the listener accepts: the current standard's, the retired ones, a setting to restrict."""

import io

import pydicom
import pytest

from tests.dicom.conftest import association, instance_ids
from tests.dicomgen import make_instance, uid

RETIRED_US = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage (Retired), still sent by old scanners
RETIRED_NM = "1.2.840.10008.5.1.4.1.1.5"
UNKNOWN = "1.2.826.0.1.3680043.8.498.999.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def instance_of(sop_class, key):
    ds = pydicom.dcmread(io.BytesIO(make_instance(patient_id="CLASSES", sop_uid=uid("classes", key), modality="US")))
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    return ds


@pytest.fixture(scope="module")
def node(module_node):
    server = module_node.server()
    return server, module_node.listener(server)


@pytest.mark.parametrize("sop_class", [RETIRED_US, RETIRED_NM])
def test_retired_storage_classes_are_stored_over_c_store(node, sop_class):
    server, listener = node
    ds = instance_of(sop_class, sop_class)
    with association(listener.port, [(sop_class, [EXPLICIT])]) as assoc:
        status = assoc.send_c_store(ds)
    assert status.Status == 0x0000
    assert ds.SOPInstanceUID in instance_ids(server)


def test_an_unknown_sop_class_is_refused_at_negotiation_with_abstract_syntax_not_supported(node):
    _, listener = node
    # CT beside it, so the association itself is accepted and the refusal is per context.
    with association(listener.port, [(UNKNOWN, [EXPLICIT]), ("1.2.840.10008.5.1.4.1.1.2", [EXPLICIT])]) as assoc:
        [refused] = [cx for cx in assoc.rejected_contexts if cx.abstract_syntax == UNKNOWN]
        # PS3.8 Table 9-18: result 3, "abstract-syntax-not-supported (provider rejection)".
        assert refused.result == 0x03
        with pytest.raises(ValueError, match="presentation context"):
            assoc.send_c_store(instance_of(UNKNOWN, "unknown"))


def test_a_listener_can_be_restricted_to_the_current_standard(module_node, node):
    server, _ = node
    current_only = module_node.listener(server, PACS_DICOM_STORAGE_CLASSES="current")
    with association(current_only.port, [(RETIRED_US, [EXPLICIT]), ("1.2.840.10008.5.1.4.1.1.2", [EXPLICIT])]) as assoc:
        [refused] = [cx for cx in assoc.rejected_contexts if cx.abstract_syntax == RETIRED_US]
        assert refused.result == 0x03

"""Reading HL7 v2 as the listener does, without a network: character sets, escape
sequences, the field table and its overrides, the orders of ORM and OMI, the ACK."""

import pytest

from archive import worklist
from mllp import fields, hl7v2
from mllp.hl7v2 import Rejected
from tests.mllp.conftest import msh, orm, pid, segment

DEFAULT = fields.table({})


def read(text, encoding="ascii", paths=DEFAULT):
    data = text.encode(encoding)
    header = hl7v2.read_header(data)
    return header, hl7v2.parse(hl7v2.decode(data, header))


def orders(text, encoding="ascii", paths=DEFAULT):
    header, message = read(text, encoding)
    return fields.orders(message, header, paths)


@pytest.mark.parametrize("escaped, plain", [
    ("A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\", "A|B^C&D~E\\"),
    ("\\H\\BOLD\\N\\ TEXT", "BOLD TEXT"),
    ("LINE\\.br\\NEXT", "LINE\r\nNEXT"),
    ("NOT\\Q\\AN ESCAPE", "NOT\\Q\\AN ESCAPE"),
    ("UNTERMINATED\\F", "UNTERMINATED\\F"),
])
def test_escape_sequences_become_the_characters_they_name(escaped, plain):
    assert hl7v2.unescape(escaped, hl7v2.Header()) == plain


@pytest.mark.parametrize("charset, codec, escaped", [
    ("8859/1", "latin-1", "CAF\\XE9\\"),
    ("UNICODE UTF-8", "utf-8", "CAF\\XC3A9\\"),
    ("UNICODE UTF-8", "utf-8", "CAF\\XC3\\\\XA9\\"),  # one character split over two sequences
    ("", "ascii", "CAF\\XE9\\"),  # 8-bit bytes in an ASCII message: Latin-1
])
def test_hex_escapes_are_bytes_in_the_messages_character_set(charset, codec, escaped):
    assert hl7v2.unescape(escaped, hl7v2.Header(codec=codec, charset=charset)) == "CAFé"


def test_msh_18_names_how_the_message_is_decoded():
    text = orm(name="MÜLLER^JÖRG", charset="8859/1")
    header, message = read(text, "latin-1")
    assert (header.charset, header.codec) == ("8859/1", "latin-1")
    [order] = fields.orders(message, header, DEFAULT)
    assert order.patient.patient_name == "MÜLLER^JÖRG"
    utf8 = orm(name="MÜLLER^JÖRG", charset="UNICODE UTF-8")
    [order] = orders(utf8, "utf-8")
    assert order.patient.patient_name == "MÜLLER^JÖRG"


def test_a_message_that_is_not_in_its_character_set_is_refused():
    data = orm(name="MÜLLER", charset="UNICODE UTF-8").encode("latin-1")
    header = hl7v2.read_header(data)
    with pytest.raises(Rejected) as refused:
        hl7v2.decode(data, header)
    assert refused.value.code == "AR"


@pytest.mark.parametrize("text, words", [
    ("PID|1||X\r", "does not begin with an MSH"),
    ("MSH|^~\r", "cut short"),
    ("MSH1^~\\&1RIS\r", "delimiters"),
    (msh("ORM^O01", charset="KLINGON") + "\r", "KLINGON"),
    (msh("", control_id="X1") + "\r", "MSH-9"),
    (msh("ORM^O01", version="3.0") + "\r", "version"),
])
def test_a_wrong_msh_is_refused(text, words):
    with pytest.raises(Rejected) as refused:
        hl7v2.read_header(text.encode())
    assert refused.value.code == "AR" and words in refused.value.reason


def test_an_orm_reads_the_defaults_of_the_table():
    [order] = orders(orm(control="NW", placer="PO-1", step="SPS-7", accession="ACC-9", station="CT-ROOM",
                         start="20250301143000", patient_id="P-5", name="DOE^JOHN^Q^JR^DR", modality="ct",
                         study_uid="1.2.3.4", sex="F", birth_date="19800102"))
    assert order.action == worklist.NEW
    assert (order.placer_order_number, order.scheduled_step_id, order.accession_number) == ("PO-1", "SPS-7", "ACC-9")
    assert (order.requested_procedure_id, order.modality, order.scheduled_station_aet) == ("RP-ACC-9", "CT", "CT-ROOM")
    assert (order.start_date, order.start_time, order.study_instance_uid) == ("20250301", "143000", "1.2.3.4")
    assert order.requested_procedure_description == order.scheduled_step_description == "CT HEAD"
    # XPN family^given^middle^suffix^prefix → PN family^given^middle^prefix^suffix;
    # an XCN (a physician) begins with the person's ID.
    assert order.patient.patient_name == "DOE^JOHN^Q^DR^JR"
    assert (order.referring_physician, order.requesting_physician) == ("REFERRING^RITA", "ORDERING^OSCAR")
    assert (order.patient.patient_id, order.patient.issuer_of_patient_id) == ("P-5", "HOSPITAL")
    assert (order.patient.patient_birth_date, order.patient.patient_sex) == ("19800102", "F")


def order_message(orc, obr):
    return "\r".join([msh("ORM^O01"), pid("P-2", "DOE^JANE"), segment("ORC", orc), segment("OBR", obr)]) + "\r"


def test_the_station_falls_back_to_obr_21_and_the_start_to_obr_27():
    [order] = orders(order_message({1: "NW", 2: "PO-2"},  # no ORC-7, no ORC-18
                                   {1: "1", 2: "PO-2", 18: "ACC-2", 20: "S2", 21: "DX-ROOM", 24: "DX",
                                    27: "^^^202503011200"}))
    assert (order.scheduled_station_aet, order.start_date, order.start_time) == ("DX-ROOM", "20250301", "120000")


def test_the_table_is_overridden_by_pacs_hl7_fields():
    paths = fields.table({"scheduled_station_aet": ["OBR-21"], "accession_number": ["OBR-3.1"]})
    text = order_message({1: "NW", 2: "PO-3", 18: "ORC-STATION"},
                         {1: "1", 2: "PO-3", 3: "FILLER-3", 18: "ACC-3", 21: "OBR-STATION"})
    header, message = read(text)
    [order] = fields.orders(message, header, paths)
    assert (order.scheduled_station_aet, order.accession_number) == ("OBR-STATION", "FILLER-3")
    with pytest.raises(ValueError, match="stations"):
        fields.table({"stations": ["OBR-21"]})
    with pytest.raises(ValueError, match="field path"):
        fields.table({"modality": ["OBR24"]})


@pytest.mark.parametrize("control, status, action, step_status", [
    ("XO", "", worklist.CHANGE, ""),
    ("CA", "", worklist.CANCEL, ""),
    ("OC", "", worklist.CANCEL, ""),
    ("DC", "", worklist.DISCONTINUE, ""),
    ("SC", "IP", worklist.STATUS, worklist.StepStatus.STARTED),
    ("SC", "CM", worklist.STATUS, worklist.StepStatus.COMPLETED),
    ("SC", "CA", worklist.CANCEL, ""),
])
def test_order_control_codes(control, status, action, step_status):
    [order] = orders(orm(control=control, order_status=status))
    assert (order.action, order.status) == (action, step_status)


def test_a_status_the_worklist_does_not_follow_changes_nothing():
    assert orders(orm(control="SC", order_status="HD")) == []


def test_an_unknown_order_control_is_an_application_error():
    with pytest.raises(Rejected) as refused:
        orders(orm(control="RE"))
    assert (refused.value.code, refused.value.error) == ("AE", hl7v2.TABLE_VALUE_NOT_FOUND)


def test_an_omi_names_each_step_in_an_ipc_segment():
    text = "\r".join([
        msh("OMI^O23^OMI_O23", version="2.5.1"),
        pid("P-8", "ROE^RICHARD"),
        segment("ORC", {1: "NW", 2: "PO-8"}),
        segment("TQ1", {1: "1", 7: "20250401081500"}),
        segment("OBR", {1: "1", 2: "PO-8", 4: "MR01^MR KNEE"}),
        segment("IPC", {1: "ACC-8", 2: "RP-8", 3: "1.2.8", 4: "SPS-8A", 5: "MR", 7: "MR STATION", 9: "MR-ROOM"}),
        segment("IPC", {1: "ACC-8", 2: "RP-8", 3: "1.2.8", 4: "SPS-8B", 5: "MR", 9: "MR-ROOM-2"}),
    ]) + "\r"
    first, second = orders(text)
    assert (first.scheduled_step_id, second.scheduled_step_id) == ("SPS-8A", "SPS-8B")
    assert (first.scheduled_station_aet, second.scheduled_station_aet) == ("MR-ROOM", "MR-ROOM-2")
    assert (first.accession_number, first.study_instance_uid, first.scheduled_station_name) == \
        ("ACC-8", "1.2.8", "MR STATION")
    assert (first.start_date, first.start_time) == ("20250401", "081500")


def test_an_order_without_its_obr_is_a_message_cut_short():
    text = orm().split("OBR|")[0]
    with pytest.raises(Rejected) as refused:
        orders(text)
    assert (refused.value.code, refused.value.error) == ("AR", hl7v2.SEGMENT_SEQUENCE_ERROR)


def test_hl7_null_clears_a_value_and_an_empty_field_leaves_it():
    text = orm().replace("|19700101|M", '|""|', 1)
    [order] = orders(text)
    assert (order.patient.patient_birth_date, order.patient.patient_sex) == ("", None)


def test_the_ack_answers_in_the_senders_delimiters_and_character_set():
    data = orm(control_id="C-1", charset="8859/1").encode("latin-1")
    header = hl7v2.read_header(data)
    accepted = hl7v2.acknowledgement(header, "AA").decode("latin-1").split("\r")
    assert accepted[0].startswith("MSH|^~\\&|PACSWEB|HOSPITAL|RIS|HOSPITAL|")
    assert accepted[0].endswith("|8859/1") and "|ACK^O01^ACK|" in accepted[0]
    assert accepted[1] == "MSA|AA|C-1"
    refused = hl7v2.acknowledgement(header, "AE", "patient Müller|unknown", hl7v2.UNKNOWN_KEY)
    lines = refused.decode("latin-1").split("\r")
    assert lines[1] == "MSA|AE|C-1|patient Müller\\F\\unknown"
    assert lines[2] == "ERR|^^^204&Unknown key identifier&HL70357"  # v2.3.1: ERR-1
    header.version = "2.5"
    lines = hl7v2.acknowledgement(header, "AR", "no", hl7v2.SEGMENT_SEQUENCE_ERROR).decode("latin-1").split("\r")
    assert lines[2] == "ERR|||100^Segment sequence error^HL70357|E||||no"


def test_delimiters_escaped_inside_a_name_part_do_not_split_the_dicom_name():
    [order] = orders(orm(name="O\\S\\BRIEN^MARY\\T\\JO"))
    assert order.patient.patient_name == "O BRIEN^MARY&JO"

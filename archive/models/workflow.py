"""The hospital workflow: the modality worklist fed by the RIS, what modalities
report of their work (MPPS), and every HL7 message received.

All of it lives in the shared database, so any node answers any of it: an order
received by one node's HL7 listener is in the worklist every node's DICOM
listener serves.
"""

from django.db import models


class StepStatus(models.TextChoices):
    """Scheduled Procedure Step Status (PS3.3 C.4.10), and CANCELLED for an order the RIS withdrew."""

    SCHEDULED = "SCHEDULED"
    ARRIVED = "ARRIVED"
    READY = "READY"
    STARTED = "STARTED"
    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    DISCONTINUED = "DISCONTINUED"
    CANCELLED = "CANCELLED"


class WorklistItem(models.Model):
    """One scheduled procedure step of an order (IHE RAD-4 → RAD-5): what a modality
    finds with a Modality Worklist C-FIND."""

    # The order's keys: the placer order number (ORC-2) names the order in the
    # RIS's messages that change or cancel it; with the step id it names the item.
    placer_order_number = models.CharField(max_length=64, db_index=True, blank=True)
    filler_order_number = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, db_index=True)
    accession_number_norm = models.CharField(max_length=16, db_index=True)
    requested_procedure_id = models.CharField(max_length=16, blank=True)
    requested_procedure_description = models.CharField(max_length=64, blank=True)
    scheduled_step_id = models.CharField(max_length=16, blank=True)
    scheduled_step_description = models.CharField(max_length=64, blank=True)
    study_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, db_index=True, blank=True)
    scheduled_station_aet = models.CharField(max_length=16, db_index=True, blank=True)
    scheduled_station_name = models.CharField(max_length=16, blank=True)
    # DA and TM as DICOM writes them, for range matching on each (PS3.4 C.2.2.2.5).
    start_date = models.CharField(max_length=8, db_index=True, blank=True)
    start_time = models.CharField(max_length=14, blank=True)
    patient_id = models.CharField(max_length=64)
    patient_id_norm = models.CharField(max_length=64, db_index=True)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=324, blank=True)
    patient_name_norm = models.CharField(max_length=324, db_index=True, blank=True)
    patient_birth_date = models.CharField(max_length=8, blank=True)
    patient_sex = models.CharField(max_length=16, blank=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    requesting_physician = models.CharField(max_length=324, blank=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.SCHEDULED,
                              db_index=True)
    # Further attributes of the item, in the DICOM JSON model (PS3.18 F.2), returned as given.
    attributes = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "worklist_item"
        ordering = ["start_date", "start_time", "id"]
        constraints = [
            models.UniqueConstraint(fields=["placer_order_number", "scheduled_step_id"],
                                    name="worklist_item_per_order_step"),
        ]

    def __str__(self):
        return f"{self.accession_number} {self.patient_id} {self.modality}@{self.scheduled_station_aet}"


class PerformedStep(models.Model):
    """A Modality Performed Procedure Step (PS3.4 F.7): created IN PROGRESS by a
    modality's N-CREATE, then COMPLETED or DISCONTINUED by its N-SET."""

    sop_instance_uid = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.IN_PROGRESS)
    calling_aet = models.CharField(max_length=16, blank=True)
    worklist_item = models.ForeignKey(WorklistItem, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="performed_steps")
    # The whole dataset as last set, in the DICOM JSON model; the performed series
    # (Performed Series Sequence) listed apart for the console.
    attributes = models.JSONField(default=dict)
    performed_series = models.JSONField(default=list)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "performed_step"

    def __str__(self):
        return f"{self.sop_instance_uid} {self.status}"


class Hl7Message(models.Model):
    """Every HL7 message received, raw, with what was done with it: for audit and replay."""

    received_at = models.DateTimeField(db_index=True)
    node = models.CharField(max_length=128, blank=True)
    remote_address = models.CharField(max_length=64, blank=True)
    control_id = models.CharField(max_length=64, blank=True, db_index=True)
    message_type = models.CharField(max_length=16, blank=True, db_index=True)
    # The message as received, decoded with the character set its MSH-18 names.
    raw = models.TextField()
    # The acknowledgement code sent (AA, AE, AR) and the reason of an AE / AR.
    outcome = models.CharField(max_length=2)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "hl7_message"

    def __str__(self):
        return f"{self.message_type} {self.control_id} {self.outcome}"


class StorageCommitment(models.Model):
    """A storage commitment request (PS3.4 J.3) and the answer the archive sent, so
    that any node can report on a transaction another node took."""

    transaction_uid = models.CharField(max_length=64, unique=True)
    calling_aet = models.CharField(max_length=16, blank=True)
    # [{"ReferencedSOPClassUID", "ReferencedSOPInstanceUID"}] asked, and the outcome of each.
    requested = models.JSONField(default=list)
    committed = models.JSONField(default=list)
    failed = models.JSONField(default=list)
    reported_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "storage_commitment"

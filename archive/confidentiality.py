"""DICOM PS3.15 Annex E, Table E.1-1: the Basic Application Level Confidentiality
Profile, as the attribute keyword → action the anonymizer applies.

Actions (PS3.15 E.1.1): "X" remove, "Z" replace with an empty value, "D" replace
with a dummy value (applied as "Z", as Orthanc does, except the patient's name and
ID, which get generated values), "U" replace a UID by another one, consistently
within one anonymization. Where the table lets the application choose between
several actions (X/Z, X/Z/D, ...) the safer removal is taken unless the attribute
is Type 1 or 2 in common IODs, where an empty value keeps the file valid.

Beyond the table, the anonymizer also: remaps every UID that is not a UID of the
standard (so references inside sequences follow), removes private attributes
unless asked to keep them, removes curve and overlay data and comments (groups
50xx and 60xx), and empties every person name the table does not name.
"""

VERSION = "2021b"
METHOD = f"pacsweb - PS 3.15-{VERSION} Table E.1-1 Basic Profile"

EMPTY = (
    "AccessionNumber", "ContentCreatorName", "ContentDate", "ContentTime", "ContrastBolusAgent",
    "FillerOrderNumberImagingServiceRequest", "PatientBirthDate", "PatientID", "PatientName", "PatientSex",
    "PlacerOrderNumberImagingServiceRequest", "ReferringPhysicianName", "StudyDate", "StudyID", "StudyTime",
    "VerifyingObserverName", "VerifyingObserverIdentificationCodeSequence", "VerifyingObserverSequence",
    "PersonName", "ObservationDateTime", "GraphicAnnotationSequence", "ReferencedStudySequence",
    "RequestedProcedureDescription", "ProcedureCodeSequence", "PatientOrientation", "SeriesNumber",
    "AcquisitionNumber",
)
# Named by some versions of the table, kept by Orthanc and by the Clean options: not PHI,
# and viewers need them to order and orient images.
KEEP_ANYWAY = ("PatientOrientation", "SeriesNumber", "AcquisitionNumber")

REMOVE = (
    "AcquisitionComments", "AcquisitionContextSequence", "AcquisitionDate", "AcquisitionDateTime",
    "AcquisitionDeviceProcessingDescription", "AcquisitionProtocolDescription", "AcquisitionTime",
    "ActualHumanPerformersSequence", "AdditionalPatientHistory", "AdmissionID", "AdmittingDate",
    "AdmittingDiagnosesCodeSequence", "AdmittingDiagnosesDescription", "AdmittingTime", "Allergies",
    "AuthorObserverSequence", "BranchOfService", "CassetteID", "CommentsOnThePerformedProcedureStep",
    "ConfidentialityConstraintOnPatientDataDescription", "ConsultingPhysicianName", "ContentSequence",
    "ContributionDescription", "CountryOfResidence", "CurrentPatientLocation", "CustodialOrganizationSequence",
    "DataSetTrailingPadding", "DerivationDescription", "DetectorID", "DeviceSerialNumber",
    "DigitalSignaturesSequence", "DischargeDiagnosisDescription", "DistributionAddress", "DistributionName",
    "EthnicGroup", "FrameComments", "GantryID", "GeneratorID", "HumanPerformerName", "HumanPerformerOrganization",
    "IconImageSequence", "IdentifyingComments", "ImageComments", "ImagePresentationComments",
    "ImagingServiceRequestComments", "Impressions", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionName", "InstitutionCodeSequence", "InsurancePlanIdentification",
    "IntendedRecipientsOfResultsIdentificationSequence", "InterpretationApproverSequence", "InterpretationAuthor",
    "InterpretationDiagnosisDescription", "InterpretationIDIssuer", "InterpretationRecorder",
    "InterpretationText", "InterpretationTranscriber", "IssuerOfAdmissionID", "IssuerOfPatientID",
    "IssuerOfServiceEpisodeID", "LastMenstrualDate", "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank",
    "ModifiedAttributesSequence", "ModifiedImageDescription", "ModifyingDeviceID",
    "NameOfPhysiciansReadingStudy", "NamesOfIntendedRecipientsOfResults", "Occupation",
    "OperatorIdentificationSequence", "OperatorsName", "OriginalAttributesSequence", "OrderCallbackPhoneNumber",
    "OrderEnteredBy", "OrderEntererLocation", "OtherPatientIDs", "OtherPatientIDsSequence",
    "OtherPatientNames", "ParticipantSequence", "PatientAddress", "PatientAge", "PatientBirthName",
    "PatientBirthTime", "PatientComments", "PatientInsurancePlanCodeSequence", "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence", "PatientReligiousPreference", "PatientSize", "PatientState",
    "PatientTelephoneNumbers", "PatientTransportArrangements", "PatientWeight", "PerformedLocation",
    "PerformedProcedureStepDescription", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "PerformedProcedureStepID", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedStationAETitle", "PerformedStationGeographicLocationCodeSequence", "PerformedStationName",
    "PerformedStationNameCodeSequence", "PerformingPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PersonAddress", "PersonTelephoneNumbers", "PhysicianApprovingInterpretation", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PhysiciansReadingStudyIdentificationSequence",
    "PreMedication", "PregnancyStatus", "ProtocolName", "ReasonForStudy", "ReferencedDigitalSignatureSequence",
    "ReferencedPatientAliasSequence", "ReferencedPatientSequence", "ReferencedSOPInstanceMACSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianIdentificationSequence",
    "ReferringPhysicianTelephoneNumbers", "RegionOfResidence", "RequestAttributesSequence",
    "RequestedContrastAgent", "RequestedProcedureComments", "RequestedProcedureID",
    "RequestedProcedureLocation", "RequestingPhysician", "RequestingService", "ResponsibleOrganization",
    "ResponsiblePerson", "ResultsComments", "ResultsDistributionListSequence", "ResultsIDIssuer",
    "ScheduledHumanPerformersSequence", "ScheduledPatientInstitutionResidence",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepEndDate", "ScheduledProcedureStepEndTime", "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime", "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence", "ScheduledStationName", "ScheduledStationNameCodeSequence",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "SeriesDate", "SeriesDescription", "SeriesTime",
    "ServiceEpisodeDescription", "ServiceEpisodeID", "SmokingStatus", "SourceImageSequence", "SpecialNeeds",
    "StationName", "StudyComments", "StudyDescription", "StudyIDIssuer", "TextComments", "TextString",
    "TopicAuthor", "TopicKeywords", "TopicSubject", "TopicTitle", "VerifyingOrganization", "VisitComments",
    "InstanceCreationDate", "InstanceCreationTime", "InstitutionalDepartmentTypeCodeSequence",
    "ReferencedPerformedProcedureStepSequence", "RequestingPhysicianIdentificationSequence",
    "ReasonForTheRequestedProcedure", "DateOfLastCalibration", "TimeOfLastCalibration",
    "DateOfSecondaryCapture", "TimeOfSecondaryCapture",
)


ACTIONS = {**{k: "X" for k in REMOVE}, **{k: "Z" for k in EMPTY if k not in KEEP_ANYWAY}}

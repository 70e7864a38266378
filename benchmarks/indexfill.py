"""A synthetic archive of many small studies, and a fast fill of pacsweb's index with it.

The C-FIND benchmark (benchmarks.dicom) needs an index of 10,000 studies or more.
Storing them through pacsweb's ingest path would take longer than the benchmark,
and C-FIND reads the index only, so fill() writes the rows straight into the
patient, study, series and instance tables with COPY, computed as archive.ingest
computes them: Orthanc public ids (archive.identifiers), normalised columns
(archive.tags.normalize) and main DICOM tags (archive.tags.main_tags of the
generated files). No file is stored, so no attachment and no change row is
written. snapshot() reads rows back in a comparable form, for the caller to check
that the filled rows equal those ingest writes for the same files.

Study i belongs to patient i // 2 and has SERIES_PER_STUDY series of
INSTANCES_PER_SERIES instances; its date, modality and patient name are spread
deterministically so that the benchmark's queries match a known subset.
"""

import datetime
import io
import json
from dataclasses import dataclass
from functools import cache

import psycopg
import pydicom
from psycopg.rows import dict_row
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from archive import tags
from archive.identifiers import (
    instance_public_id,
    patient_public_id,
    series_public_id,
    study_public_id,
)
from tests.dicomgen import make_instance, uid

SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 5
INSTANCES_PER_STUDY = SERIES_PER_STUDY * INSTANCES_PER_SERIES
SIDE = 8  # rows = columns of the 16-bit pixels: C-FIND never reads them
SURNAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
    "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN",
    "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON",
    "SMIRNOV", "SMALL", "SIMMONS", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES",
)
GIVEN_NAMES = ("JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "ELIZABETH",
               "WILLIAM", "BARBARA", "RICHARD", "SUSAN", "JOSEPH", "JESSICA", "THOMAS", "SARAH", "CHARLES", "KAREN")
MODALITIES = ("CT", "MR", "CR", "US", "DX", "MG", "NM", "PT", "XA", "RF")
FIRST_DATE = datetime.date(2015, 1, 1)
DAYS = 3653  # 2015-01-01 to 2024-12-31
# What POST /instances from this machine, as the benchmarks' admin user, records about an instance's origin.
ORIGIN = {"origin": "RestApi", "remote_aet": "", "remote_ip": "127.0.0.1", "called_aet": "", "http_username": "admin"}


def patient_id(patient):
    return f"BENCH{patient:06d}"


@dataclass(frozen=True)
class Study:
    index: int
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    accession_number: str
    study_description: str
    modalities: tuple  # the modality of each series

    def series_uid(self, series):
        return uid(self.study_uid, series)


def study(index):
    patient = index // 2
    modality = MODALITIES[index % len(MODALITIES)]
    # Every third study also has a CT series (a scout, a PET/CT): ModalitiesInStudy
    # then has to look at every series of a study, not at its first one.
    modalities = (modality, "CT" if index % 3 == 0 else modality)
    date = FIRST_DATE + datetime.timedelta(days=index * 7919 % DAYS)
    return Study(
        index=index,
        patient_id=patient_id(patient),
        patient_name=f"{SURNAMES[patient % len(SURNAMES)]}^{GIVEN_NAMES[patient // len(SURNAMES) % len(GIVEN_NAMES)]}",
        study_uid=uid("bench-dicom", index),
        study_date=date.strftime("%Y%m%d"),
        accession_number=f"A{index:08d}",
        study_description=f"{modality} EXAM",
        modalities=modalities,
    )


def instance_arguments(spec, series, number, side=SIDE):
    """make_instance() arguments of instance `number` (1-based) of series `series` of a study."""
    series_uid = spec.series_uid(series)
    return {
        "patient_id": spec.patient_id, "patient_name": spec.patient_name, "study_uid": spec.study_uid,
        "series_uid": series_uid, "sop_uid": uid(series_uid, number), "instance_number": number,
        "rows": side, "columns": side, "modality": spec.modalities[series],
        "study_description": spec.study_description, "series_description": f"SERIES {series + 1}",
        "accession_number": spec.accession_number, "study_date": spec.study_date, "SeriesNumber": series + 1,
    }


def instance_files(spec):
    """The Part-10 files of a study, series by series."""
    return [make_instance(**instance_arguments(spec, series, number))
            for series in range(SERIES_PER_STUDY) for number in range(1, INSTANCES_PER_SERIES + 1)]


@cache
def _templates():
    """Main DICOM tags of study 0's files, per level (for an instance, its main tags
    and its image tags): what every study shares.

    fill() replaces the values that differ between studies; the constant ones
    (formatted numbers, dates, names) come from real files parsed as ingest does.
    """
    spec = study(0)
    series_tags, instance_tags = [], []
    for series in range(SERIES_PER_STUDY):
        instance_tags.append([])
        for number in range(1, INSTANCES_PER_SERIES + 1):
            dataset = pydicom.dcmread(io.BytesIO(make_instance(**instance_arguments(spec, series, number))))
            instance_tags[series].append((tags.main_tags(dataset, tags.INSTANCE_TAGS),
                                          tags.main_tags(dataset, tags.IMAGE_TAGS)))
        series_tags.append(tags.main_tags(dataset, tags.SERIES_TAGS))
    return tags.main_tags(dataset, tags.PATIENT_TAGS), tags.main_tags(dataset, tags.STUDY_TAGS), series_tags, instance_tags


RESOURCE_COLUMNS = ("public_id", "main_dicom_tags", "created_at", "last_update", "is_stable")
PATIENT_COLUMNS = RESOURCE_COLUMNS + ("patient_id", "patient_id_norm", "patient_name_norm", "patient_birth_date",
                                      "patient_sex")
STUDY_COLUMNS = RESOURCE_COLUMNS + ("patient_id", "study_instance_uid", "study_date", "accession_number_norm",
                                    "study_description_norm", "referring_physician_norm")
SERIES_COLUMNS = RESOURCE_COLUMNS + ("study_id", "series_instance_uid", "modality", "series_description_norm",
                                     "series_number")
INSTANCE_COLUMNS = RESOURCE_COLUMNS + ("series_id", "sop_instance_uid", "sop_class_uid", "transfer_syntax_uid",
                                       "instance_number", "image_tags", *ORIGIN, "node")


def fill(database_url, count, node):
    """Index studies 0 .. count-1 (count * INSTANCES_PER_STUDY instances) in pacsweb's database.

    `node` is the node name the server records (PACS_NODE_NAME). The tables must
    not hold any of these resources yet. Ends with VACUUM ANALYZE, which
    autovacuum would run soon after such a bulk insert anyway.
    """
    patient_template, study_template, series_templates, instance_templates = _templates()
    now = datetime.datetime.now(datetime.UTC)
    stamps = (now, now, False)
    specs = [study(i) for i in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        patients = {}
        for spec in specs:
            patients.setdefault(spec.patient_id, spec.patient_name)
        _copy(conn, "patient", PATIENT_COLUMNS, (
            (patient_public_id(pid), json.dumps({**patient_template, "PatientID": pid, "PatientName": name}), *stamps,
             pid, tags.normalize(pid), tags.normalize(name), patient_template["PatientBirthDate"],
             patient_template["PatientSex"])
            for pid, name in patients.items()))
        patient_pks = dict(conn.execute("SELECT public_id, id FROM patient"))

        _copy(conn, "study", STUDY_COLUMNS, (
            (study_public_id(s.patient_id, s.study_uid),
             json.dumps({**study_template, "StudyDate": s.study_date, "StudyInstanceUID": s.study_uid,
                         "AccessionNumber": s.accession_number, "StudyDescription": s.study_description}), *stamps,
             patient_pks[patient_public_id(s.patient_id)], s.study_uid, s.study_date,
             tags.normalize(s.accession_number), tags.normalize(s.study_description),
             tags.normalize(study_template["ReferringPhysicianName"]))
            for s in specs))
        study_pks = dict(conn.execute("SELECT public_id, id FROM study"))

        series_rows, instance_rows = [], []
        for s in specs:
            for series, template in enumerate(series_templates):
                series_uid = s.series_uid(series)
                description = f"SERIES {series + 1}"
                series_rows.append((
                    series_public_id(s.patient_id, s.study_uid, series_uid),
                    json.dumps({**template, "Modality": s.modalities[series], "SeriesInstanceUID": series_uid,
                                "SeriesDescription": description}), *stamps,
                    study_pks[study_public_id(s.patient_id, s.study_uid)], series_uid, s.modalities[series],
                    tags.normalize(description), template["SeriesNumber"]))
                for number, (instance_template, image_tags) in enumerate(instance_templates[series], start=1):
                    sop_uid = uid(series_uid, number)
                    instance_rows.append((
                        instance_public_id(s.patient_id, s.study_uid, series_uid, sop_uid),
                        json.dumps({**instance_template, "SOPInstanceUID": sop_uid}), *stamps,
                        series_public_id(s.patient_id, s.study_uid, series_uid), sop_uid, CTImageStorage,
                        ExplicitVRLittleEndian, number, json.dumps(image_tags), *ORIGIN.values(), node))
        _copy(conn, "series", SERIES_COLUMNS, series_rows)
        series_pks = dict(conn.execute("SELECT public_id, id FROM series"))
        _copy(conn, "instance", INSTANCE_COLUMNS, (row[:5] + (series_pks[row[5]],) + row[6:] for row in instance_rows))
        conn.execute("VACUUM ANALYZE")


def _copy(conn, table, columns, rows):
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def snapshot(database_url, patient_public_ids):
    """Every row of these patients and below, keyed by (table, public id), in a comparable form.

    Primary keys and timestamps, which differ by construction, are left out; a
    foreign key becomes the public id of the parent it points to.
    """
    queries = {
        "patient": "SELECT t.*, NULL AS parent FROM patient t WHERE t.public_id = ANY(%s)",
        "study": "SELECT t.*, p.public_id AS parent FROM study t JOIN patient p ON p.id = t.patient_id "
                 "WHERE p.public_id = ANY(%s)",
        "series": "SELECT t.*, st.public_id AS parent FROM series t JOIN study st ON st.id = t.study_id "
                  "JOIN patient p ON p.id = st.patient_id WHERE p.public_id = ANY(%s)",
        "instance": "SELECT t.*, se.public_id AS parent FROM instance t JOIN series se ON se.id = t.series_id "
                    "JOIN study st ON st.id = se.study_id JOIN patient p ON p.id = st.patient_id "
                    "WHERE p.public_id = ANY(%s)",
    }
    foreign_keys = {"patient": None, "study": "patient_id", "series": "study_id", "instance": "series_id"}
    rows = {}
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        for table, sql in queries.items():
            for row in conn.execute(sql, [list(patient_public_ids)]):
                for column in ("id", "created_at", "last_update", foreign_keys[table]):
                    row.pop(column, None)
                rows[(table, row["public_id"])] = row
    return rows

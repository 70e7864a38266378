"""The hospital workflow: worklist items, performed procedure steps (MPPS), HL7 messages, storage commitments."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('archive', '0005_change_types_written'),
    ]

    operations = [
        migrations.CreateModel(
            name='Hl7Message',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('received_at', models.DateTimeField(db_index=True)),
                ('node', models.CharField(blank=True, max_length=128)),
                ('remote_address', models.CharField(blank=True, max_length=64)),
                ('control_id', models.CharField(blank=True, db_index=True, max_length=64)),
                ('message_type', models.CharField(blank=True, db_index=True, max_length=16)),
                ('raw', models.TextField()),
                ('outcome', models.CharField(max_length=2)),
                ('error', models.TextField(blank=True)),
            ],
            options={
                'db_table': 'hl7_message',
            },
        ),
        migrations.CreateModel(
            name='StorageCommitment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('transaction_uid', models.CharField(max_length=64, unique=True)),
                ('calling_aet', models.CharField(blank=True, max_length=16)),
                ('requested', models.JSONField(default=list)),
                ('committed', models.JSONField(default=list)),
                ('failed', models.JSONField(default=list)),
                ('reported_at', models.DateTimeField(null=True)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'storage_commitment',
            },
        ),
        migrations.CreateModel(
            name='WorklistItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('placer_order_number', models.CharField(blank=True, db_index=True, max_length=64)),
                ('filler_order_number', models.CharField(blank=True, max_length=64)),
                ('accession_number', models.CharField(db_index=True, max_length=16)),
                ('accession_number_norm', models.CharField(db_index=True, max_length=16)),
                ('requested_procedure_id', models.CharField(blank=True, max_length=16)),
                ('requested_procedure_description', models.CharField(blank=True, max_length=64)),
                ('scheduled_step_id', models.CharField(blank=True, max_length=16)),
                ('scheduled_step_description', models.CharField(blank=True, max_length=64)),
                ('study_instance_uid', models.CharField(max_length=64)),
                ('modality', models.CharField(blank=True, db_index=True, max_length=16)),
                ('scheduled_station_aet', models.CharField(blank=True, db_index=True, max_length=16)),
                ('scheduled_station_name', models.CharField(blank=True, max_length=16)),
                ('start_date', models.CharField(blank=True, db_index=True, max_length=8)),
                ('start_time', models.CharField(blank=True, max_length=14)),
                ('patient_id', models.CharField(max_length=64)),
                ('patient_id_norm', models.CharField(db_index=True, max_length=64)),
                ('issuer_of_patient_id', models.CharField(blank=True, max_length=64)),
                ('patient_name', models.CharField(blank=True, max_length=324)),
                ('patient_name_norm', models.CharField(blank=True, db_index=True, max_length=324)),
                ('patient_birth_date', models.CharField(blank=True, max_length=8)),
                ('patient_sex', models.CharField(blank=True, max_length=16)),
                ('referring_physician', models.CharField(blank=True, max_length=324)),
                ('requesting_physician', models.CharField(blank=True, max_length=324)),
                ('status', models.CharField(choices=[('SCHEDULED', 'Scheduled'), ('ARRIVED', 'Arrived'), ('READY', 'Ready'), ('STARTED', 'Started'), ('IN PROGRESS', 'In Progress'), ('COMPLETED', 'Completed'), ('DISCONTINUED', 'Discontinued'), ('CANCELLED', 'Cancelled')], db_index=True, default='SCHEDULED', max_length=16)),
                ('attributes', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField()),
                ('updated_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'worklist_item',
                'ordering': ['start_date', 'start_time', 'id'],
                'constraints': [models.UniqueConstraint(fields=('placer_order_number', 'scheduled_step_id'), name='worklist_item_per_order_step')],
            },
        ),
        migrations.CreateModel(
            name='PerformedStep',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('sop_instance_uid', models.CharField(max_length=64, unique=True)),
                ('status', models.CharField(choices=[('SCHEDULED', 'Scheduled'), ('ARRIVED', 'Arrived'), ('READY', 'Ready'), ('STARTED', 'Started'), ('IN PROGRESS', 'In Progress'), ('COMPLETED', 'Completed'), ('DISCONTINUED', 'Discontinued'), ('CANCELLED', 'Cancelled')], default='IN PROGRESS', max_length=16)),
                ('calling_aet', models.CharField(blank=True, max_length=16)),
                ('attributes', models.JSONField(default=dict)),
                ('performed_series', models.JSONField(default=list)),
                ('created_at', models.DateTimeField()),
                ('updated_at', models.DateTimeField()),
                ('worklist_item', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='performed_steps', to='archive.worklistitem')),
            ],
            options={
                'db_table': 'performed_step',
            },
        ),
    ]

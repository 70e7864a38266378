"""The network configuration, the audit trail and API tokens move from the cluster app to
the archive: the tables stay as they are (every model names its db_table); only Django's
state changes."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cluster', '0005_audit_tokens'),
        ('archive', '0003_filedeletion'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='AuditEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(db_index=True)),
                    ('actor_kind', models.CharField(max_length=8)),
                    ('actor', models.CharField(db_index=True, max_length=160)),
                    ('address', models.CharField(blank=True, max_length=45)),
                    ('action', models.CharField(db_index=True, max_length=16)),
                    ('method', models.CharField(blank=True, max_length=16)),
                    ('path', models.CharField(blank=True, max_length=500)),
                    ('status', models.IntegerField(null=True)),
                    ('level', models.CharField(blank=True, max_length=8)),
                    ('resource', models.CharField(blank=True, db_index=True, max_length=128)),
                    ('details', models.JSONField(default=dict)),
                    ('node', models.CharField(blank=True, max_length=128)),
                ],
                options={
                    'db_table': 'audit_event',
                },
            ),
            migrations.CreateModel(
                name='DicomQuery',
                fields=[
                    ('id', models.CharField(max_length=36, primary_key=True, serialize=False)),
                    ('modality', models.CharField(max_length=64)),
                    ('level', models.CharField(max_length=8)),
                    ('query', models.JSONField()),
                    ('answers', models.JSONField(default=list)),
                    ('created_at', models.DateTimeField(auto_now_add=True)),
                ],
                options={
                    'db_table': 'dicom_query',
                },
            ),
            migrations.CreateModel(
                name='Modality',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=64, unique=True)),
                    ('aet', models.CharField(max_length=16, verbose_name='AE title')),
                    ('host', models.CharField(max_length=255)),
                    ('port', models.PositiveIntegerField()),
                    ('manufacturer', models.CharField(default='Generic', max_length=32)),
                    ('allow_echo', models.BooleanField(default=True)),
                    ('allow_find', models.BooleanField(default=True)),
                    ('allow_move', models.BooleanField(default=True)),
                    ('allow_get', models.BooleanField(default=True)),
                    ('allow_store', models.BooleanField(default=True)),
                    ('local_aet', models.CharField(blank=True, max_length=16)),
                    ('timeout', models.PositiveIntegerField(default=0, help_text='seconds; 0 uses the default')),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'verbose_name_plural': 'modalities',
                    'db_table': 'modality',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='Peer',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=64, unique=True)),
                    ('url', models.CharField(max_length=500)),
                    ('username', models.CharField(blank=True, max_length=128)),
                    ('password', models.CharField(blank=True, max_length=256)),
                    ('http_headers', models.JSONField(default=dict)),
                    ('timeout', models.PositiveIntegerField(default=0, help_text='seconds; 0 uses the default')),
                    ('updated_at', models.DateTimeField(auto_now=True)),
                ],
                options={
                    'db_table': 'peer',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='ApiToken',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=64)),
                    ('prefix', models.CharField(max_length=12, unique=True)),
                    ('digest', models.CharField(max_length=64)),
                    ('created_at', models.DateTimeField()),
                    ('last_used_at', models.DateTimeField(null=True)),
                    ('revoked_at', models.DateTimeField(null=True)),
                    ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'api_token',
                },
            ),
        ]),
    ]

"""The network configuration, the audit trail and API tokens now belong to the archive app
(archive 0004): Django's state forgets them here; the tables stay."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('archive', '0004_models_moved'),
        ('cluster', '0005_audit_tokens'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='apitoken',
                name='user',
            ),
            migrations.DeleteModel(
                name='AuditEvent',
            ),
            migrations.DeleteModel(
                name='DicomQuery',
            ),
            migrations.DeleteModel(
                name='Modality',
            ),
            migrations.DeleteModel(
                name='Peer',
            ),
            migrations.DeleteModel(
                name='ApiToken',
            ),
        ]),
    ]

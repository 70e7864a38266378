"""JobSuccess and JobFailure are no longer change types: no code wrote them (choices only, no SQL)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('archive', '0004_models_moved'),
    ]

    operations = [
        migrations.AlterField(
            model_name='change',
            name='change_type',
            field=models.CharField(choices=[('NewInstance', 'New Instance'), ('NewSeries', 'New Series'), ('NewStudy', 'New Study'), ('NewPatient', 'New Patient'), ('StableSeries', 'Stable Series'), ('StableStudy', 'Stable Study'), ('StablePatient', 'Stable Patient'), ('Deleted', 'Deleted'), ('UpdatedAttachment', 'Updated Attachment'), ('UpdatedMetadata', 'Updated Metadata')], max_length=24),
        ),
    ]

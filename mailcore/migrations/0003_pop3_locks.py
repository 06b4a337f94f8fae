import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mailcore', '0002_outbound_queue'),
    ]

    operations = [
        migrations.CreateModel(
            name='MailboxLock',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('owner', models.CharField(help_text='Which session holds it (host, process, session).', max_length=100)),
                ('expires_at', models.DateTimeField()),
                ('mailbox', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='lock', to='mailcore.mailbox')),
            ],
        ),
    ]

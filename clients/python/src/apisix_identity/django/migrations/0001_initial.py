from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="FeedPosition",
            fields=[
                ("name", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("last_id", models.CharField(max_length=64)),
                ("updated", models.DateTimeField(auto_now=True)),
            ],
            options={"verbose_name": "change feed position"},
        ),
    ]

"""svclink's outbox and inbox tables."""

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]  # Django is untyped
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="InboxMessage",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("queue", models.CharField(max_length=255)),
                ("event_id", models.CharField(max_length=255)),
                ("handled_at", models.DateTimeField()),
            ],
            options={
                "db_table": "svclink_inbox",
                "indexes": [models.Index(fields=["handled_at"], name="svclink_inbox_handled_at")],
                "constraints": [
                    models.UniqueConstraint(fields=("queue", "event_id"), name="svclink_inbox_once")
                ],
            },
        ),
        migrations.CreateModel(
            name="OutboxMessage",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("event_id", models.CharField(max_length=255)),
                ("event_type", models.CharField(max_length=255)),
                ("exchange", models.CharField(max_length=255)),
                ("routing_key", models.CharField(max_length=255)),
                ("body", models.BinaryField()),
                ("properties", models.TextField()),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "pending"), ("sent", "sent"), ("failed", "failed")],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("reason", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField()),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "svclink_outbox",
                "indexes": [models.Index(fields=["state", "id"], name="svclink_outbox_state_id")],
            },
        ),
    ]

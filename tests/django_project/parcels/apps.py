from django.apps import AppConfig


class ParcelsConfig(AppConfig):  # type: ignore[misc]
    name = "tests.django_project.parcels"
    label = "parcels"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class ShopConfig(AppConfig):  # type: ignore[misc]
    name = "tests.django_project.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"

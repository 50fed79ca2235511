from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("whoami/", views.whoami),
    path("awhoami/", views.awhoami),
    path("e2e/", views.e2e),
    path("users/", views.users),
    path("upload/", views.upload),
]

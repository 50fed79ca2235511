from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("whoami/", views.whoami),
    path("whoami-local/", views.whoami_local),
    path("awhoami-local/", views.awhoami_local),
    path("awhoami/", views.awhoami),
    path("e2e/", views.e2e),
    path("users/", views.users),
    path("upload/", views.upload),
    path("traced/", views.traced),
    path("atraced/", views.atraced),
]

from django.urls import path

from members import views

urlpatterns = [
    path("healthz", views.healthz),
    path("me", views.me),
    path("organizations/<str:alias>/members", views.organization_members),
]

from django.http import JsonResponse
from django.urls import path


def me(request):
    return JsonResponse({
        "authenticated": request.user.is_authenticated,
        "username": request.user.get_username() if request.user.is_authenticated else None,
        "email": getattr(request.user, "email", None),
        "first_name": getattr(request.user, "first_name", None),
        "organizations": request.organizations,
        "source": request.identity.organization_source if request.identity else None,
    })


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [path("me", me), path("healthz", healthz)]

from django.http import JsonResponse
from django.middleware.csrf import get_token
from django.urls import path
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apisix_identity.django.drf import AssertionAuthentication


def me(request):
    return JsonResponse({
        "authenticated": request.user.is_authenticated,
        "username": request.user.get_username() if request.user.is_authenticated else None,
        "email": getattr(request.user, "email", None),
        "first_name": getattr(request.user, "first_name", None),
        "organizations": request.organizations,
        "source": request.identity.organization_source if request.identity else None,
        # Hands out the CSRF token as a form page would: a login rotates it.
        "csrf": get_token(request),
    })


def healthz(request):
    return JsonResponse({"status": "ok"})


class Api(APIView):
    authentication_classes = [AssertionAuthentication]
    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({"username": request.user.get_username(), "sub": request.auth.subject})

    def post(self, request):
        return self.get(request)


class SessionApi(Api):
    """DRF's default: what an app without the assertion class gets."""

    authentication_classes = [SessionAuthentication]

    def get(self, request):
        return Response({"username": request.user.get_username()})


urlpatterns = [path("me", me), path("healthz", healthz), path("api", Api.as_view()),
               path("api-session", SessionApi.as_view())]

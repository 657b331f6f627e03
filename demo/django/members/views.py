from django.http import JsonResponse

from .models import Membership


def healthz(request):
    return JsonResponse({"status": "ok"})


def me(request):
    """The user as the app's database has them, next to what the request's assertion says."""
    user = request.user
    return JsonResponse({
        "username": user.get_username(),
        "email": user.email,
        "memberships": list(user.memberships.values_list("alias", flat=True)),
        "assertion_organizations": request.organizations,
    })


def organization_members(request, alias):
    """Who the app's database says belongs to an organization: what background jobs, reports and
    other users see, with no request from the members themselves."""
    members = Membership.objects.filter(alias=alias).select_related("user")
    return JsonResponse({"alias": alias, "members": [m.user.get_username() for m in members]})

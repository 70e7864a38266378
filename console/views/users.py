"""The Users page, for administrators: accounts, their role, sign-ins and tokens (archive.users)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404
from django.shortcuts import redirect, render

from archive import users
from archive.errors import InvalidAccount
from archive.roles import ADMIN, ROLES
from console.access import audit, console_view


@console_view(GET=ADMIN, POST=ADMIN)
def user_list(request):
    shown = None  # a password generated now: shown on this answer only
    if request.method == "POST":
        username, role = request.POST.get("username", "").strip(), request.POST.get("role", "")
        password = request.POST.get("password", "")
        if password and password != request.POST.get("password2", ""):
            messages.error(request, "No account created: the two passwords differ.")
        else:
            try:
                user, password_set = users.create(username, role, password or None)
            except InvalidAccount as error:
                messages.error(request, f"No account created: {error}.")
            else:
                audit(request, "configure", account=user.username, created=True, role=role)
                messages.success(request, f"Created the {role} account {user.username}.")
                if not password:
                    shown = {"username": user.username, "password": password_set}
    return render(request, "console/users.html", {
        "section": "users", "accounts": list(users.accounts()), "roles": ROLES, "shown": shown,
        "form": request.POST if request.method == "POST" and not shown else {},
        "min_length": settings.PASSWORD_MIN_LENGTH,
    })


def _account(username):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise Http404(f"There is no account named “{username}”.")
    return user


@console_view(GET=None, POST=ADMIN)
def user_role(request, username):
    user, role = _account(username), request.POST.get("role", "")
    try:
        users.set_role(user, role)
    except InvalidAccount as error:
        messages.error(request, f"The role of {username} is unchanged: {error}.")
    else:
        audit(request, "configure", account=username, role=role)
        messages.success(request, f"{username} now has the {role} role.")
    return redirect("console:users")


@console_view(GET=None, POST=ADMIN)
def user_active(request, username):
    user, active = _account(username), request.POST.get("active") == "yes"
    if user == request.user and not active:
        messages.error(request, "You cannot disable your own account.")
        return redirect("console:users")
    try:
        users.set_active(user, active)
    except InvalidAccount as error:
        messages.error(request, f"{username} is still enabled: {error}.")
    else:
        audit(request, "configure", account=username, active=active)
        messages.success(request, f"{username} is {'enabled' if active else 'disabled: sign-ins and tokens are refused'}.")
    return redirect("console:users")


@console_view(GET=None, POST=ADMIN)
def user_password(request, username):
    """A new generated password, shown once on the Users page."""
    user = _account(username)
    password = users.reset_password(user)
    audit(request, "configure", account=username, password_reset=True)
    return render(request, "console/users.html", {
        "section": "users", "accounts": list(users.accounts()), "roles": ROLES,
        "shown": {"username": username, "password": password, "reset": True}, "form": {},
        "min_length": settings.PASSWORD_MIN_LENGTH,
    })

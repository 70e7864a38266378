"""Sign in and sign out (Django's auth views with the console's templates)."""

from django.contrib.auth.views import LoginView, LogoutView
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache


@method_decorator(never_cache, name="dispatch")
class LoginPage(LoginView):
    template_name = "console/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        return "/ui/"


class LogoutPage(LogoutView):
    # POST only (Django 5): a link cannot sign anyone out behind their back.
    next_page = "/ui/login/"

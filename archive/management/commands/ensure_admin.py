"""Create the first admin account if the archive has none.

The password comes from PACS_ADMIN_PASSWORD; without it one is generated and
printed once. An existing account is never changed.
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import IntegrityError


class Command(BaseCommand):
    help = "Create the admin account on first start (PACS_ADMIN_PASSWORD or a generated password)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = settings.ADMIN_PASSWORD or secrets.token_urlsafe(12)
        try:
            User.objects.create_superuser(username=username, password=password, email="")
        except IntegrityError:  # another node created it at the same moment
            return
        if settings.ADMIN_PASSWORD:
            self.stdout.write(f"Created the admin account '{username}' with the password from PACS_ADMIN_PASSWORD.")
        else:
            self.stdout.write(
                f"Created the admin account '{username}' with the password: {password}\n"
                "It is shown only this once: write it down, or change it with "
                f"`python manage.py changepassword {username}`."
            )

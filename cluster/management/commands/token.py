"""API tokens from the command line: create (shown once), list, revoke."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from archive.models import ApiToken
from archive import tokens


class Command(BaseCommand):
    help = "Create, list or revoke API tokens (Authorization: Bearer <token>)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token for a user; it is printed once")
        create.add_argument("user")
        create.add_argument("name")
        sub.add_parser("list", help="every token, without secrets")
        revoke = sub.add_parser("revoke", help="revoke the token with this prefix")
        revoke.add_argument("prefix")

    def handle(self, *args, action, **options):
        if action == "create":
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
            try:
                token, _ = tokens.create(user, options["name"])
            except ValueError as error:
                raise CommandError(str(error))
            self.stdout.write(token)
        elif action == "list":
            for row in ApiToken.objects.select_related("user").order_by("created_at"):
                state = "revoked" if row.revoked_at else "active"
                self.stdout.write(f"{row.prefix}  {row.user.username:<16} {row.name:<24} {state}")
        elif not tokens.revoke(options["prefix"]):
            raise CommandError(f"no active token with prefix {options['prefix']!r}")
        else:
            self.stdout.write(f"token {options['prefix']} revoked")

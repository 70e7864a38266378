"""User accounts from the command line: create one with its role, list, change a role, disable, enable."""

import getpass
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from archive import audit, users
from archive.errors import InvalidAccount
from archive.roles import ROLES


class Command(BaseCommand):
    help = "Create, list, enable or disable user accounts and set their role (viewer, uploader, admin)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an account; without a terminal to type the password in, "
                                               "a generated one is printed once")
        create.add_argument("username")
        create.add_argument("--role", choices=ROLES, default="viewer")
        sub.add_parser("list", help="every account with its role, state and last sign-in")
        role = sub.add_parser("role", help="give an account another role")
        role.add_argument("username")
        role.add_argument("role", choices=ROLES)
        for name, words in (("disable", "refuse its sign-ins and tokens"), ("enable", "let it sign in again")):
            sub.add_parser(name, help=words).add_argument("username")

    def handle(self, *args, action, **options):
        try:
            if action == "create":
                self._create(options["username"], options["role"])
            elif action == "list":
                for user in users.accounts():
                    state = "active" if user.is_active else "disabled"
                    last = user.last_login.strftime("%Y-%m-%d %H:%M") if user.last_login else "never signed in"
                    self.stdout.write(f"{user.username:<24} {user.role or 'no role':<9} {state:<9} {last}")
            else:
                user = self._user(options["username"])
                if action == "role":
                    users.set_role(user, options["role"])
                    self._audit(user, role=options["role"])
                else:
                    users.set_active(user, action == "enable")
                    self._audit(user, active=action == "enable")
                self.stdout.write(f"{user.username}: {action} done")
        except InvalidAccount as error:
            raise CommandError(str(error))

    def _create(self, username, role):
        password = None
        if sys.stdin.isatty():
            password = getpass.getpass(f"Password for {username} (empty: generate one): ")
            if password and password != getpass.getpass("The same password again: "):
                raise CommandError("the two passwords differ")
        user, password_set = users.create(username, role, password or None)
        self._audit(user, created=True, role=role)
        self.stdout.write(f"Created the {role} account '{user.username}'.")
        if not password:
            self.stdout.write(f"Its password (shown only this once): {password_set}")

    def _user(self, username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    def _audit(self, user, **changed):
        # The trail names who changed what; an operator at the shell is "manage.py".
        audit.record("user", "manage.py", "configure", details={"account": user.username, **changed})

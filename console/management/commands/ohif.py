"""Install the pinned OHIF viewer (console/ohif.py): the setup step `make run` calls, also run by hand.

    python manage.py ohif                      # through npm (its cache keeps the tarball)
    python manage.py ohif --tarball FILE.tgz   # offline: a tarball made with `npm pack @ohif/app@VERSION`
    python manage.py ohif --if-missing         # what `make run` does: nothing when installed
"""

from django.core.management.base import BaseCommand, CommandError

from console import ohif


class Command(BaseCommand):
    help = f"Install the OHIF viewer {ohif.VERSION} served at /ohif/ (checked against its pinned integrity)."

    def add_arguments(self, parser):
        parser.add_argument("--tarball", help="install from this @ohif/app tarball instead of fetching it")
        parser.add_argument("--if-missing", action="store_true", help="do nothing when this version is installed")

    def handle(self, *args, tarball, if_missing, **options):
        if if_missing and ohif.is_installed():
            return
        try:
            where = ohif.fetch(tarball)
        except ohif.OhifUnavailable as error:
            raise CommandError(str(error))
        self.stdout.write(f"OHIF viewer {ohif.VERSION} installed in {where}")

"""Remove what crashed writes left in the storage area (the housekeeper runs this too)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from archive.ingest import remove_orphan_files


class Command(BaseCommand):
    help = "Delete stored files that no index row refers to, and stale temporary files."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace", type=int, default=settings.ORPHAN_GRACE_SECONDS,
            help="only files older than this many seconds (default PACS_ORPHAN_GRACE)",
        )

    def handle(self, *args, grace, **options):
        removed = remove_orphan_files(grace_seconds=grace)
        self.stdout.write(f"removed {removed} orphan file(s)")

"""Drain a node: it fails /readyz (the load balancer sends it no new request or
association), finishes what it is doing, and its workers take no new job."""

from django.conf import settings
from django.core.management.base import BaseCommand

from cluster import registry


class Command(BaseCommand):
    help = "Drain this node (PACS_NODE_NAME) or --node NAME; undrain ends it."
    draining = True

    def add_arguments(self, parser):
        parser.add_argument("--node", default=None, help="the node to act on (default: this one)")

    def handle(self, *args, node, **options):
        name = node or settings.NODE_NAME
        registry.set_draining(name, self.draining)
        self.stdout.write(f"node {name} {'is draining' if self.draining else 'takes work again'}")

from cluster.management.commands.drain import Command as Drain


class Command(Drain):
    help = "End the draining of this node (PACS_NODE_NAME) or --node NAME."
    draining = False

from django.apps import AppConfig


class ClusterConfig(AppConfig):
    name = "cluster"
    verbose_name = "Cluster"

    def ready(self):
        # Registers the job types: a worker must know every type it may be given.
        from cluster import tasks  # noqa: F401

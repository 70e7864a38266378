from django.apps import AppConfig


class ClusterConfig(AppConfig):
    name = "cluster"
    verbose_name = "Cluster"

    def ready(self):
        # Registers the job types (a worker must know every type it may be given)
        # and connects the runtime to what the core signals: its counters, and the
        # files its deletions release.
        from archive import signals
        from cluster import metrics, modification, tasks  # noqa: F401 (modification: its job type)

        signals.counted.connect(metrics.count_signal, dispatch_uid="cluster-metrics")
        signals.files_released.connect(tasks.queue_file_removal, dispatch_uid="cluster-deletions")

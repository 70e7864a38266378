"""What the core tells the runtime above it without knowing it (Django signals).

The core counts its work and frees files; where the counts go (one Redis hash
for the whole cluster) and who removes the files (the deletion workers) is the
cluster's business, wired when it starts (cluster/apps.py). With nothing
connected nothing is lost that matters: counters are best-effort, and the
housekeeper removes the files of every outbox row no worker was handed.
"""

from django.dispatch import Signal

# name: a metric's name; amount: how much to add; labels: {label: value}.
counted = Signal()
# outbox_ids: FileDeletion rows, committed, whose files may now be removed.
files_released = Signal()


def count(name, amount=1, **labels):
    counted.send(sender=None, name=name, amount=amount, labels=labels)

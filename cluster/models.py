"""Cluster-wide state: nodes, jobs, modalities, peers (DESIGN §7, §10)."""

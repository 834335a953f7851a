"""The peers' workloads as Huey tasks (Redis storage), for `python -m bench --peers`.
Huey has no time limit for a running task, so it has no W4 row. The Redis URL comes from
GF_REDIS_URL."""
import os

from huey import RedisHuey

from .rq_tasks import noop, true_command

huey = RedisHuey("gfpeers", url=os.environ.get("GF_REDIS_URL", "redis://127.0.0.1:6379/0"))
huey_noop = huey.task(name="noop")(noop)
huey_true = huey.task(name="true_command")(true_command)

"""The peers' workloads as Dramatiq actors (a Redis broker and its Redis result backend),
for `python -m bench --peers`. The Redis URL comes from GF_REDIS_URL."""
import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from .rq_tasks import hang, noop, true_command

REDIS_URL = os.environ.get("GF_REDIS_URL", "redis://127.0.0.1:6379/0")
broker = RedisBroker(url=REDIS_URL)
broker.add_middleware(Results(backend=RedisBackend(url=REDIS_URL)))
dramatiq.set_broker(broker)

dramatiq_noop = dramatiq.actor(noop, actor_name="noop", store_results=True, max_retries=0)
dramatiq_true = dramatiq.actor(true_command, actor_name="true_command", store_results=True,
                               max_retries=0)
#: Dramatiq's time limit raises in the worker thread; the command itself is not killed.
dramatiq_hang = dramatiq.actor(hang, actor_name="hang", store_results=True, max_retries=0,
                               time_limit=500)

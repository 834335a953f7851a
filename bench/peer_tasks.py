"""The peers' workloads as Celery tasks (a Redis broker and result backend), for
`python -m bench --peers`. The Redis URL comes from GF_REDIS_URL (the bench starts its
own redis-server on loopback)."""
import os

from celery import Celery

from .rq_tasks import hang, noop, true_command

REDIS_URL = os.environ.get("GF_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("gfpeers", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(result_expires=600, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)

celery_noop = app.task(name="noop")(noop)
celery_true = app.task(name="true_command")(true_command)
celery_hang = app.task(name="hang", time_limit=0.5)(hang)

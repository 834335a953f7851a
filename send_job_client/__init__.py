"""The sender role: job clients that never lose a job, plugins and the sendjob CLI."""
from gearman_frame import tasks as _tasks

from .clients import OUTBOX, Delivery, JobClient
from .dispatch import Job

_tasks.set_client_factory(JobClient)

__all__ = ["JobClient", "Job", "Delivery", "OUTBOX"]

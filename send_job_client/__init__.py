"""The sender role: job clients that never lose a job, plugins and the sendjob CLI."""
from gearman_frame.dispatch import Job

from .clients import OUTBOX, Delivery, JobClient

__all__ = ["JobClient", "Job", "Delivery", "OUTBOX"]

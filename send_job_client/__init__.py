"""The sender role: job clients that never lose a job, plugins and the sendjob CLI.

Everything here is imported when first used: `sendjob result` answers from the store
without the client (send_job_client/lookup.py), which with YAML, the wire layer and the
dispatcher is 230 ms of imports; and a worker imports plugins, which import ``Job``
from here, without the sender's outbox, result store and collector.
"""
__all__ = ["JobClient", "Job", "Delivery", "OUTBOX"]


def __getattr__(name: str) -> object:
    if name == "Job":
        from gearman_frame.sending.dispatch import Job
        return Job
    if name in ("JobClient", "Delivery", "OUTBOX"):
        from . import clients
        return getattr(clients, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

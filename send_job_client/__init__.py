"""The sender role: job clients that never lose a job, plugins and the sendjob CLI.

``Job`` is cheap; ``JobClient``, ``Delivery`` and ``OUTBOX`` are imported when first
used: a worker imports plugins, which import ``Job`` from here, and must not carry the
client's outbox, result store and collector (about 0.3 MiB) for nothing.
"""
from gearman_frame.dispatch import Job

__all__ = ["JobClient", "Job", "Delivery", "OUTBOX"]


def __getattr__(name):
    if name in ("JobClient", "Delivery", "OUTBOX"):
        from . import clients
        return getattr(clients, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

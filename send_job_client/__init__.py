"""The sender role: job clients that never lose a job, plugins and the sendjob CLI.

Everything here is imported when first used: a worker imports plugins, which import
``Job`` from here, and must not carry the client's outbox, result store and collector
(about 0.3 MiB) for nothing; and `sendjob result` answers from the store without the
dispatcher (send_job_client/quick.py).
"""
__all__ = ["JobClient", "Job", "Delivery", "OUTBOX"]


def __getattr__(name):
    if name == "Job":
        from gearman_frame.dispatch import Job
        return Job
    if name in ("JobClient", "Delivery", "OUTBOX"):
        from . import clients
        return getattr(clients, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

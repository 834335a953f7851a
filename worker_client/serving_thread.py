"""One worker thread: a WireWorker connected to every server, serving its functions (and,
when some are capped fleet-wide, announcing each only while it may take one)."""
import logging
import threading

from gearman_frame.wire import WireWorker
from gearman_frame.wire.batch import BatchWireWorker

log = logging.getLogger(__name__)


class ServingThread(threading.Thread):
    """One worker thread: a WireWorker connected to every server, serving ``tasks``."""

    def __init__(self, pool, label, tasks, batch=None):
        super().__init__(name=f"{pool.name}.{label}", daemon=True)
        self.pool = pool
        self.label = label
        #: True once the watchdog took over its hung task: nobody waits for it any more
        self.abandoned = False
        settings = pool.config.worker
        if batch is None:
            self.wire = WireWorker(pool.servers, client_id=self.name,
                                   max_packet=settings.max_payload,
                                   dead_after=settings.dead_server_after)
        else:
            self.wire = BatchWireWorker(pool.servers, batch.max, batch.wait,
                                        client_id=self.name, max_packet=settings.max_payload,
                                        dead_after=settings.dead_server_after)
        for function, handler in tasks.items():
            self.wire.register_task(function, handler)
        if pool.caps is not None and batch is None:  # fleet-wide caps, this thread's share
            self.wire.set_caps(pool.caps.for_thread(label, tasks))

    def run(self):
        try:
            self.wire.work()
        except Exception:
            log.exception("worker thread %s died; the pool will restart it", self.name)

    def stop(self):
        self.wire.stop()

    @property
    def connected(self):
        return self.wire.any_connected()

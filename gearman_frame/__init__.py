"""gearman-frame's shared core: config, logging, job envelope, server addresses, the wire
layer over python3-gearman and the local gearmand control.

The three role packages (send_job_client, worker_client, manage_client) build on this
package and never on each other.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

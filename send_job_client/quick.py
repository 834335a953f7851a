"""`sendjob`'s entry point: the short way (``lookup``) when the arguments are a lookup of
a result the store holds, else the full `sendjob`."""
import sys

from send_job_client.lookup import lookup


def entry():
    """Console-script entry point: the short way when it applies, else the full one."""
    code = lookup(sys.argv[1:])
    if code is not None:
        return code
    # the full sendjob: 230 ms of imports (YAML, the wire layer, the dispatcher) that a
    # lookup does without
    from send_job_client.send_job_client import entry as full
    return full()

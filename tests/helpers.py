"""Test helpers shared by the suites."""
import time


def wait_for(predicate, timeout=10.0, what="condition", interval=0.02):
    """Poll ``predicate`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def function_status(server, function):
    """The FunctionStatus of ``function`` on a fixture server (None if gearmand has none)."""
    from gearman_frame.addresses import parse_address
    from manage_client.admin import AdminClient

    with AdminClient([parse_address(server.address)]) as admin:
        return next((r for r in admin.status() if r.function == function), None)


def queued(server, function):
    """Jobs of ``function`` waiting on a fixture server (0 if gearmand does not know it)."""
    row = function_status(server, function)
    return row.queued if row else 0

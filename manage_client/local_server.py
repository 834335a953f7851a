"""`runadmin server start|stop|status`: the local gearmand (with a persistent SQLite
queue), and with ``--tls`` stunnel in front of it; the config's maxqueue limits are set
again on every start (gearmand keeps them in memory only)."""
import logging

from gearman_frame.addresses import ServerAddress
from gearman_frame.daemons.gearmand import LocalGearmand, free_port
from gearman_frame.daemons.tls_front import TlsFront
from gearman_frame.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ServerControlError

from manage_client.admin import WHO, AdminClient, set_maxqueue

log = logging.getLogger("manage_client.runadmin")

#: Where ``runadmin server`` keeps gearmand's pidfile, log and queue (relative to the config).
DEFAULT_DATA_DIR = "var/gearmand"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def local_server(config, args, port=None, host=None):
    """The LocalGearmand that ``runadmin server`` controls for this config and flags."""
    local = [s for s in config.servers if s.host in LOOPBACK_HOSTS]
    port = port or args.port or (local[0].port if local else 4730)
    host = host or (local[0].host if local and local[0].host != "localhost" else "127.0.0.1")
    data_dir = args.data_dir or config.resolve(DEFAULT_DATA_DIR)
    return LocalGearmand(data_dir, port=port, host=host,
                         queue=args.queue or config.server.queue,
                         job_retries=config.server.job_retries)


def cmd_server(config, args):
    server = local_server(config, args)
    front = TlsFront(server.data_dir, server.host, server.port)
    backend = front.saved_backend_port()
    if args.action == "start":
        return _start_tls(config, server, front, args) if args.tls else _start(config, server)
    if backend is not None:  # a TLS front runs (or ran) on this port
        behind = local_server(config, args, port=backend, host="127.0.0.1")
        if args.action == "stop":
            stopped = front.stop()
            stopped = behind.stop() or stopped
            front.forget()
            log.info("server stop: %s: gearmand %s behind %s %s", WHO, behind.address,
                     front.address, "stopped" if stopped else "was not running")
            print(f"gearmand {'stopped' if stopped else 'was not running'} on "
                  f"{front.address} (stunnel) and {behind.address}")
            return EXIT_OK
        status, pid = behind.status(), front.running_pid()
        print(status.describe() + "; " + (f"stunnel running: pid {pid}, {front.address}"
                                          if pid else f"stunnel not running on {front.address}"))
        return EXIT_OK if status.running and pid else EXIT_FAILED
    if args.action == "stop":
        stopped = server.stop()
        log.info("server stop: %s: gearmand %s %s", WHO, server.address,
                 "stopped" if stopped else "was not running")
        print(f"gearmand {'stopped' if stopped else 'was not running'} on {server.address}")
        return EXIT_OK
    status = server.status()
    print(status.describe())
    return EXIT_OK if status.running else EXIT_FAILED


def _reapply_limits(config, server):
    """gearmand keeps maxqueue limits in memory only: set the config's again on the
    server just started (a restart would otherwise drop them without a word)."""
    limited = {name: fn.maxqueue for name, fn in config.functions.items()
               if fn.maxqueue is not None}
    if not limited:
        return
    with AdminClient([ServerAddress(server.host, server.port)]) as admin:
        for function, size in sorted(limited.items()):
            set_maxqueue(admin, function, size)
    print("maxqueue limits from the config applied: "
          + ", ".join(f"{f}={n}" for f, n in sorted(limited.items())))


def _start(config, server):
    pid = server.start()
    log.info("server start: %s started gearmand %s pid %s queue %s", WHO, server.address,
             pid, server.queue)
    print(f"gearmand started: pid {pid}, {server.address}, data {server.data_dir}")
    _reapply_limits(config, server)
    return EXIT_OK


def _start_tls(config, server, front, args):
    """gearmand on a free loopback port, stunnel on the configured one."""
    if front.running_pid() is not None:
        raise ServerControlError(f"stunnel already runs on {front.address}", EXIT_USAGE)
    if args.tls_cert:
        cert, key, ca = args.tls_cert, args.tls_key or args.tls_cert, None
    else:
        cert, key, ca = front.local_certificates()
    behind = LocalGearmand(server.data_dir, port=free_port(), host="127.0.0.1",
                           queue=server.queue, job_retries=server.job_retries)
    front.backend_port, front.cert, front.key = behind.port, cert, key
    front.client_ca = args.tls_client_ca
    gearmand_pid = behind.start()
    try:
        stunnel_pid = front.start()
    except ServerControlError:
        behind.stop()
        front.forget()
        raise
    log.info("server start: %s started gearmand %s pid %s behind stunnel %s pid %s", WHO,
             behind.address, gearmand_pid, front.address, stunnel_pid)
    print(f"gearmand started: pid {gearmand_pid}, {behind.address} (loopback only), data "
          f"{server.data_dir}; stunnel pid {stunnel_pid} takes TLS on {front.address}"
          + (f"; clients need a certificate from {args.tls_client_ca}"
             if args.tls_client_ca else "")
          + (f"; CA for tls.ca_file: {ca}" if ca else ""))
    _reapply_limits(config, behind)
    return EXIT_OK

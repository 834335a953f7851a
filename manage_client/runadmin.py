#!/usr/bin/env python3
"""runadmin: administer gearmand servers and gearman-frame workers.

Reports queues and workers across every configured server, clears a queue into a dump
file (nothing is lost: `resend` brings it back), stops workers by name, and runs the local
gearmand. Every action that changes state is logged with who did it and how many jobs.
"""
import getpass
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict

from gearman_frame import cli
from gearman_frame.addresses import ServerAddress
from gearman_frame.errors import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, AdminError,
                                  AdminUnsupported, FrameError, ServerControlError,
                                  UsageError)
from gearman_frame.files import write_private_file
from gearman_frame.logs import printable
from gearman_frame.queues import CONTROL_RELOAD, CONTROL_SHUTDOWN, control_function
from gearman_frame.server import QUEUE_BUILTIN, QUEUE_SQLITE, LocalGearmand, free_port
from gearman_frame.tls_front import TlsFront
from gearman_frame.signing import key_id, new_key_text, read_key_file

from manage_client.admin import AdminClient
from manage_client.hosts import host_rows
from manage_client.schedules_view import lease_holder, schedule_rows
from manage_client.admin_protocol import worker_name_of
from manage_client.drain import Drainer, read_dump, resend_jobs, send_control
from manage_client.dead_letters import dead_functions, read_queue
from manage_client.inspect_workers import (INSPECT_WAIT, cancel_running, inspect, render,
                                           worker_processes)
from manage_client import views

log = logging.getLogger("manage_client.runadmin")

#: Where ``runadmin server`` keeps gearmand's pidfile, log and queue (relative to the config).
DEFAULT_DATA_DIR = "var/gearmand"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Seconds ``shutdown`` waits for the worker's connections to go away.
SHUTDOWN_WAIT = 60.0
WHO = f"{getpass.getuser()}@{socket.gethostname()}"

EPILOG = """examples:
  runadmin status                       # queued / running / workers per function and server
  runadmin status --json
  runadmin status --watch 2
  runadmin workers
  runadmin clear compress --dump compress.jsonl
  runadmin resend compress.jsonl
  runadmin shutdown web1
  runadmin web                          # the dashboard on http://127.0.0.1:8088/
  runadmin exporter --listen 127.0.0.1:9465   # queues for Prometheus
  runadmin dead compress                # its dead letters, decoded; left queued
  runadmin inspect web1                 # running jobs, counters, durations, memory
  runadmin reload web1                  # read its config again, processes replaced one by one
  runadmin server start                 # local gearmand, SQLite queue under var/gearmand
  runadmin apply                        # maxqueue limits from the config"""


def build_parser():
    parser = cli.build_parser("runadmin", __doc__.splitlines()[0], EPILOG)
    sub = cli.subcommands(parser)
    status = sub.add_parser("status", help="queued, running and workers per function")
    status.add_argument("--json", action="store_true")
    status.add_argument("--all", action="store_true", help="include control functions")
    status.add_argument("--watch", nargs="?", type=cli.seconds, const=2.0, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until Ctrl-C")
    workers = sub.add_parser("workers", help="connected workers: name, IP, functions")
    workers.add_argument("--json", action="store_true")
    workers.add_argument("--all", action="store_true", help="include connections that "
                                                            "serve nothing (clients, admins)")
    workers.add_argument("--by-host", action="store_true",
                         help="per IP: workers, connections, functions, running jobs; "
                              "hosts seen before and gone now")
    clear = sub.add_parser("clear", help="drain FUNCTION's queued jobs into a dump file")
    clear.add_argument("function")
    clear.add_argument("--dump", required=True, metavar="FILE")
    clear.add_argument("--timeout", type=cli.seconds, default=600.0)
    resend = sub.add_parser("resend", help="submit the jobs of a dump again (background)")
    resend.add_argument("file")
    resend.add_argument("--all", action="store_true",
                        help="also resend foreground jobs (their senders were told they "
                             "were cleared)")
    resend.add_argument("--strict", action="store_true",
                        help="send nothing if any line is bad (default: send the good ones, "
                             "name the bad ones, exit 1)")
    web = sub.add_parser("web", help="a dashboard of queues, workers, results and dead "
                                     "letters in the browser")
    web.add_argument("--listen", type=cli.listen, default="127.0.0.1:8088",
                     metavar="HOST:PORT")
    web.add_argument("--token-file", metavar="FILE",
                     help="an owner-only file holding the token every request must carry "
                          "(needed off loopback; default: web.token_file)")
    exporter = sub.add_parser("exporter", help="serve gearmand's queues and workers as "
                                               "Prometheus metrics")
    exporter.add_argument("--listen", type=cli.listen, default="127.0.0.1:9465",
                          metavar="HOST:PORT")
    exporter.add_argument("--interval", type=cli.seconds, default=5.0,
                          help="ask each server at most once per SECONDS (default 5)")
    dead = sub.add_parser("dead", help="list the dead letters (decoded) without removing "
                                       "them; `resend` is the way back")
    dead.add_argument("function", nargs="?", help="only this function's dead letters")
    dead.add_argument("--json", action="store_true")
    schedules = sub.add_parser("schedules", help="each schedule's next and last fire, and "
                                                 "the last result's status")
    schedules.add_argument("--json", action="store_true")
    inspect = sub.add_parser("inspect", help="what each worker process is doing: running "
                                             "jobs, counters, durations, memory")
    inspect.add_argument("names", nargs="*", metavar="NAME")
    inspect.add_argument("--all", action="store_true", help="every worker connected")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--timeout", type=cli.seconds, default=INSPECT_WAIT,
                         help="seconds to wait for the answers (default %(default)s)")
    reload = sub.add_parser("reload", help="have the worker NAME read its config again "
                                           "(as SIGHUP: a bad one is refused, in its log)")
    reload.add_argument("name")
    shutdown = sub.add_parser("shutdown", help="stop the worker NAME gracefully")
    shutdown.add_argument("name")
    shutdown.add_argument("--timeout", type=cli.seconds, default=SHUTDOWN_WAIT)
    for name in ("version", "getpid", "verbose"):
        sub.add_parser(name, help=f"gearmand's '{name}' on every server")
    jobs = sub.add_parser("jobs", help="gearmand's 'show jobs' on every server")
    jobs.add_argument("--json", action="store_true")
    cancel = sub.add_parser("cancel", help="stop a running job by its id, or cancel a queued "
                                           "one by its gearmand handle (H:...)")
    cancel.add_argument("handle", metavar="JOB_ID|HANDLE")
    maxqueue = sub.add_parser("maxqueue", help="limit FUNCTION's queue to N jobs")
    maxqueue.add_argument("function")
    maxqueue.add_argument("size", type=int)
    sub.add_parser("apply", help="apply the config's per-function maxqueue limits")
    keygen = sub.add_parser("keygen", help="write a new signing key to FILE (owner-only); "
                                           "name it in security.key_file")
    keygen.add_argument("file")
    server = sub.add_parser("server", help="start, stop or inspect the local gearmand")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument("--port", type=cli.port, help="port (default: the first configured "
                                                 "loopback server's, else 4730)")
    server.add_argument("--data-dir", help=f"pidfile, log and queue folder "
                                           f"(default: {DEFAULT_DATA_DIR} beside the config)")
    server.add_argument("--queue", choices=[QUEUE_SQLITE, QUEUE_BUILTIN], default=QUEUE_SQLITE,
                        help="persistent SQLite queue (default) or gearmand's in-memory one")
    server.add_argument("--tls", action="store_true",
                        help="gearmand on loopback only and stunnel taking TLS on the port")
    server.add_argument("--tls-cert", metavar="FILE", help="the server certificate (PEM; "
                        "default: one made once in the data dir by a local CA)")
    server.add_argument("--tls-key", metavar="FILE", help="its key (default: --tls-cert)")
    server.add_argument("--tls-client-ca", metavar="FILE",
                        help="require client certificates signed by this CA")
    return parser


def print_json(rows):
    print(json.dumps([asdict(r) if hasattr(r, "__dataclass_fields__") else r for r in rows]))


# --- reports --------------------------------------------------------------------------

def cmd_status(admin, config, args):
    if args.watch and not args.json:
        return _watch(admin, args)
    rows = views.visible_status(admin.status(), args.all)
    if args.json:
        print_json(rows)
    else:
        views.print_table(views.status_table(rows, admin.unreachable))
    return EXIT_OK


def _watch(admin, args):
    from rich.live import Live
    interval = max(0.2, args.watch)

    def table():
        return views.status_table(views.visible_status(admin.status(), args.all),
                                  admin.unreachable)
    try:
        if sys.stdout.isatty():
            with Live(table(), auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(table(), refresh=True)
        while True:
            views.print_table(table())
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK


def cmd_workers(admin, config, args):
    if args.by_host:
        hosts = host_rows(config, admin.workers())
        if args.json:
            print(json.dumps(hosts, indent=2))
        else:
            views.print_table(views.hosts_table(hosts), min_width=120)
        return EXIT_OK
    rows = views.visible_workers(admin.workers(), args.all)
    if args.json:
        print_json(rows)
    else:
        views.print_table(views.workers_table(rows))
    return EXIT_OK


def cmd_simple(admin, config, args):
    method = {"version": admin.version, "getpid": admin.getpid, "verbose": admin.verbose}
    for server, value in method[args.command]():
        print(f"{server}\t{value}")
    for server in admin.unsupported:
        print(f"{server}\tnot supported by this job server")
    return EXIT_OK


def cmd_jobs(admin, config, args):
    rows = admin.show_jobs()
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row.server}\t{row.handle}\tretries={row.retries}\tqueued={row.job_queued}")
    return EXIT_OK


# --- actions that change state -----------------------------------------------------------

def cmd_cancel(admin, config, args):
    if not args.handle.startswith("H:"):  # a job id, as sendjob and inspect show it
        return _cancel_running(admin, config, args.handle)
    answers = admin.cancel_job(args.handle)
    done = [server for server, result in answers if not isinstance(result, AdminError)]
    log.info("cancel: %s cancelled job %s on %s", WHO, args.handle, done or "no server")
    if not done:
        raise FrameError(f"cancel {args.handle}: " + "; ".join(str(e) for _s, e in answers))
    print(f"cancelled {args.handle} on {', '.join(done)} (it leaves the queue when a worker "
          "reaches it)")
    return EXIT_OK


def _cancel_running(admin, config, job_id):
    """Have the worker process that runs ``job_id`` stop it."""
    process, answer = cancel_running(config, admin.workers(), job_id)
    log.info("cancel: %s cancelled running job %s on %s", WHO, job_id, process)
    print(f"job {job_id} on {process}: {answer}")
    return EXIT_OK


def cmd_maxqueue(admin, config, args):
    _limit(admin, args.function, args.size)
    print(f"maxqueue {args.function} = {args.size} on {len(admin.connections)} server(s)")
    return EXIT_OK


def _limit(admin, function, size):
    try:  # gearmand's maxqueue only applies to a function it knows
        admin.create_function(function)
    except AdminUnsupported:  # the Perl job server: maxqueue works without it
        pass
    admin.maxqueue(function, size)
    log.info("maxqueue: %s set %s to %d on %s", WHO, function, size,
             [str(c.address) for c in admin.connections])


def cmd_apply(admin, config, args):
    limited = {name: fn.maxqueue for name, fn in config.functions.items()
               if fn.maxqueue is not None}
    for function, size in sorted(limited.items()):
        _limit(admin, function, size)
        print(f"maxqueue {function} = {size}")
    if not limited:
        print("no function in the config sets maxqueue")
    return EXIT_OK


def cmd_clear(admin, config, args):
    def warn(text):
        print(f"runadmin: warning: {text}", file=sys.stderr)
    drainer = Drainer(config.servers, args.function, args.dump)
    report = drainer.run(timeout=args.timeout, on_warning=warn)
    log.info("clear: %s removed %d job(s) of %s into %s %s", WHO, report.removed,
             args.function, args.dump, report.by_priority)
    if report.failure is not None:
        raise FrameError(f"clear {args.function}: dumped {report.removed} job(s) into "
                         f"{args.dump}, then could not write it ({report.failure.strerror}); "
                         "the rest are still queued")
    print(f"cleared {report.removed} job(s) of {args.function} into {args.dump}")
    return EXIT_OK


def cmd_resend(admin, config, args):
    dumped, bad = read_dump(args.file, config.keyring)
    for line in bad:
        print(f"runadmin: {args.file}:{line.number}: bad line, not resent: {line.reason}",
              file=sys.stderr)
    if bad and args.strict:
        raise FrameError(f"resend {args.file}: {len(bad)} bad line(s); --strict sends "
                         "nothing")
    chosen = [j for j in dumped if args.all or j["background"] is True]
    skipped = len(dumped) - len(chosen)
    report = resend_jobs(config, chosen, unsent_path=f"{args.file}.unsent")
    log.info("resend: %s resent %d job(s) from %s (%d queued, %d not sent, %d bad line(s))",
             WHO, len(chosen), args.file, report.queued, len(report.unsent), len(bad))
    print(f"resent {len(chosen)} job(s) from {args.file}: {report.queued} queued"
          + (f", {len(report.unsent)} not sent (kept in {report.unsent_path}: "
             f"{report.reasons()})" if report.unsent else "")
          + (f"; skipped {skipped} foreground or raw job(s) (--all resends them)"
             if skipped else "")
          + (f"; {len(bad)} bad line(s) left out" if bad else ""))
    return EXIT_OK if not report.unsent and not bad else EXIT_FAILED


def _connected(admin, name):
    return [c for c in admin.workers() if worker_name_of(c.client_id) == name]


def _controllable(admin, config, name):
    """The connections of gearman-frame worker ``name``; FrameError if there is none."""
    found = _connected(admin, name)
    if not found:
        raise FrameError(f"no worker named '{name}' is connected to "
                         f"{', '.join(str(s) for s in config.servers)}")
    if not any(control_function(name) in c.functions for c in found):
        raise FrameError(f"'{name}' is not a gearman-frame worker (none of its "
                         f"{len(found)} connection(s) serves {control_function(name)}); "
                         "stop it by its own means")
    return found


def cmd_exporter(admin, config, args):
    from manage_client.exporter import serve
    host, port = args.listen
    try:
        serve(config.servers, host, port, args.interval)
    except OSError as err:
        raise FrameError(f"exporter: cannot listen on {host}:{port}: {err.strerror}") from err
    return EXIT_OK


def cmd_web(admin, config, args):
    from manage_client.web import serve
    host, port = args.listen
    token_file = args.token_file or config.web.token_file
    token = (read_key_file(token_file, None, "--token-file").decode("utf-8", "replace")
             if token_file else None)

    def cancel(job_id):
        with AdminClient(config.servers) as admin:
            process, answer = cancel_running(config, admin.workers(), job_id)
        log.info("cancel: %s (dashboard) cancelled running job %s on %s", WHO, job_id,
                 process)
        return {"process": process, "answer": answer}
    try:
        serve(config, host, port, token, cancel)
    except OSError as err:
        raise FrameError(f"web: cannot listen on {host}:{port}: {err.strerror}") from err
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_dead(admin, config, args):
    letters = []
    for queue in dead_functions(admin.status(), args.function):
        letters += read_queue(config, queue)
    log.info("dead: %s read %d dead letter(s)", WHO, len(letters))
    if args.json:
        print(json.dumps(letters, indent=2, default=repr))
        return EXIT_OK
    if not letters:
        print("no dead letters" + (f" for {args.function}" if args.function else ""))
        return EXIT_OK
    views.print_table(views.dead_table(letters))
    return EXIT_OK


def cmd_schedules(config, args):
    rows = schedule_rows(config)
    holder = lease_holder(config) if rows else None
    if args.json:
        print(json.dumps({"lease": holder, "schedules": rows}, indent=2))
        return EXIT_OK
    if not rows:
        print(f"no schedules in {config.path or 'the defaults'}")
        return EXIT_OK
    views.print_table(views.schedules_table(rows), min_width=130)
    print(f"scheduler: active, holding the lease on {holder}" if holder else
          "scheduler: none holds the lease (no `sendjob scheduler` is running)")
    return EXIT_OK


def cmd_inspect(admin, config, args):
    if not args.names and not args.all:
        raise UsageError("inspect: name one or more workers, or --all")
    processes = worker_processes(admin.workers(), set(args.names))
    missing = sorted(set(args.names) - {worker_name_of(f"{p}.ctl") for p in processes})
    if missing or not processes:
        raise FrameError(f"no gearman-frame worker named {', '.join(missing) or '(any)'} is "
                         f"connected to {', '.join(str(s) for s in config.servers)}")
    answers = inspect(config, processes, args.timeout)
    if args.json:
        print(json.dumps(answers, indent=2))
    else:
        print(render(answers))
    return EXIT_OK if all("error" not in a for a in answers) else EXIT_FAILED


def cmd_reload(admin, config, args):
    _controllable(admin, config, args.name)
    answer = send_control(config.servers, args.name, CONTROL_RELOAD, config.keyring)
    log.info("reload: %s asked worker %s to read its config again", WHO, args.name)
    print(f"worker {args.name}: {bytes(answer).decode('utf-8', 'replace')} (a config it "
          "refuses is named in its log; it keeps serving the previous one)")
    return EXIT_OK


def cmd_shutdown(admin, config, args):
    def connected():
        return _connected(admin, args.name)
    _controllable(admin, config, args.name)
    send_control(config.servers, args.name, CONTROL_SHUTDOWN, config.keyring)
    log.info("shutdown: %s asked worker %s to stop", WHO, args.name)
    deadline = time.monotonic() + args.timeout
    while connected():
        if time.monotonic() > deadline:
            raise FrameError(f"worker '{args.name}' accepted the shutdown but is still "
                             f"connected after {args.timeout:g}s (running commands finish "
                             "within its grace period)")
        time.sleep(0.2)
    print(f"worker {args.name} stopped")
    return EXIT_OK


def cmd_keygen(args):
    """A new key file: 32 random bytes as hex, mode 0600; never over an existing file."""
    if os.path.lexists(args.file):
        raise UsageError(f"keygen: {args.file} exists; not overwriting a key (remove it, or "
                         "name a new file and rotate: see the README)")
    try:
        write_private_file(args.file, new_key_text())
    except OSError as err:
        raise UsageError(f"keygen: cannot write {args.file}: {err.strerror}") from err
    kid = key_id(read_key_file(args.file, None, "keygen"))
    print(f"wrote a new key to {args.file} (key id {kid})")
    return EXIT_OK


# --- the local gearmand -------------------------------------------------------------------

def local_server(config, args, port=None, host=None):
    """The LocalGearmand that ``runadmin server`` controls for this config and flags."""
    local = [s for s in config.servers if s.host in LOOPBACK_HOSTS]
    port = port or args.port or (local[0].port if local else 4730)
    host = host or (local[0].host if local and local[0].host != "localhost" else "127.0.0.1")
    data_dir = args.data_dir or config.resolve(DEFAULT_DATA_DIR)
    return LocalGearmand(data_dir, port=port, host=host, queue=args.queue,
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
            _limit(admin, function, size)
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


COMMANDS = {"status": cmd_status, "workers": cmd_workers, "version": cmd_simple,
            "getpid": cmd_simple, "verbose": cmd_simple, "jobs": cmd_jobs,
            "cancel": cmd_cancel, "maxqueue": cmd_maxqueue, "apply": cmd_apply,
            "clear": cmd_clear, "resend": cmd_resend, "shutdown": cmd_shutdown,
            "reload": cmd_reload, "inspect": cmd_inspect, "dead": cmd_dead,
            "exporter": cmd_exporter}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "keygen":  # before the config, which may name this very file
        return cmd_keygen(args)
    config = cli.load(args, connect=args.command != "server")
    if args.command == "server":
        return cmd_server(config, args)
    if args.command == "schedules":
        return cmd_schedules(config, args)
    if args.command in ("exporter", "web"):  # serve on, whether or not a server is up now
        return {"exporter": cmd_exporter, "web": cmd_web}[args.command](None, config, args)
    with AdminClient(config.servers) as admin:
        code = COMMANDS[args.command](admin, config, args)
        warn_skipped(admin)
        return code


def warn_skipped(admin):
    """Say (on stderr) that some reply lines could not be read, instead of failing."""
    if admin.skipped:
        server, line = admin.skipped[0]
        print(f"runadmin: warning: left out {len(admin.skipped)} reply line(s) that could not "
              f"be parsed (a name with a TAB or newline?), e.g. from {server}: "
              f"{printable(line)[:120]}", file=sys.stderr)


def entry():
    """Console-script entry point."""
    return cli.run(main, prog="runadmin")


if __name__ == "__main__":
    sys.exit(entry())

"""runadmin's command line: every subcommand, its flags and the examples."""
from gearman_frame import cli
from gearman_frame.daemons.gearmand import QUEUE_BUILTIN, QUEUE_SQLITE

from manage_client.inspect_workers import INSPECT_WAIT
from manage_client.local_server import DEFAULT_DATA_DIR

#: The first line of runadmin's help.
SUMMARY = "runadmin: administer gearmand servers and gearman-frame workers."

#: Seconds ``shutdown`` waits for the worker's connections to go away.
SHUTDOWN_WAIT = 60.0

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
    parser = cli.build_parser("runadmin", SUMMARY, EPILOG)
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
    sub.add_parser("reaper", help="one pass of the reaper: background jobs no worker "
                                  "claimed within store.requeue_after, whose server is lost "
                                  "or forgot them, sent to a live server (needs store.url)")
    workflows = sub.add_parser("workflows", help="running and recent workflows from the "
                                                 "ledger: steps ended, state, time")
    workflows.add_argument("id", nargs="?", help="one workflow: each of its steps")
    workflows.add_argument("--running", action="store_true", help="only those still running")
    workflows.add_argument("--limit", type=int, default=50, help="at most this many (50)")
    workflows.add_argument("--json", action="store_true")
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
    init = sub.add_parser("init", help="write a commented starter config.yaml and a "
                                       "signing key into DIR (default: here); never over "
                                       "a file")
    init.add_argument("folder", nargs="?", default=".", metavar="DIR")
    init.add_argument("--port", type=cli.port, default=4730,
                      help="the loopback port of the gearmand it names (default 4730)")
    keygen = sub.add_parser("keygen", help="write a new signing key to FILE (owner-only); "
                                           "name it in security.key_file")
    keygen.add_argument("file")
    server = sub.add_parser("server", help="start, stop or inspect the local gearmand")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument("--port", type=cli.port, help="port (default: the first configured "
                                                 "loopback server's, else 4730)")
    server.add_argument("--data-dir", help=f"pidfile, log and queue folder "
                                           f"(default: {DEFAULT_DATA_DIR} beside the config)")
    server.add_argument("--queue", metavar="QUEUE",
                        help=f"{QUEUE_SQLITE} (a file in the data dir), {QUEUE_BUILTIN} "
                             "(memory), postgresql://... or redis://HOST:PORT (default: "
                             "server.queue, sqlite)")
    server.add_argument("--tls", action="store_true",
                        help="gearmand on loopback only and stunnel taking TLS on the port")
    server.add_argument("--tls-cert", metavar="FILE", help="the server certificate (PEM; "
                        "default: one made once in the data dir by a local CA)")
    server.add_argument("--tls-key", metavar="FILE", help="its key (default: --tls-cert)")
    server.add_argument("--tls-client-ca", metavar="FILE",
                        help="require client certificates signed by this CA")
    return parser

#!/usr/bin/env python3
"""runworkers: serve gearman-frame functions from this host until stopped.

A supervisor (this process) runs P worker processes (``--processes``, default 1), each
of K threads connected to every configured gearmand: NAME.0 ... NAME.K-1 for a single
process, NAME.p1.0 ... with several. Stops gracefully on SIGTERM/SIGINT or `runadmin
shutdown NAME` (a second signal forces).
"""
import functools
import logging
import os
import sys

from gearman_frame import cli
from gearman_frame.addresses import parse_listen
from gearman_frame.config import protected_mode
from gearman_frame.errors import EXIT_OK, EXIT_UNREACHABLE, UsageError
from gearman_frame.files import private_folder
from gearman_frame.tasks import import_plugins

from worker_client import descriptors, metrics
from worker_client.hygiene import limit_malloc_arenas
from worker_client.supervisor import READY, Supervisor, tell_supervisor
from worker_client.workers import WorkerPool, install_signal_handlers, worker_name

log = logging.getLogger("worker_client.runworkers")

#: Folder (beside the config) for the worker's state file of running command groups.
STATE_DIR = "var/run"
#: Folder (beside the config) where dead letters no server took wait to be sent.
SPOOL_DIR = "var/spool/dead-letters"

EPILOG = """examples:
  runworkers                                   # every configured function, config threads
  runworkers --name web1 --threads 8
  runworkers --processes 4 --threads 2         # 4 processes of 2 threads, supervised
  runworkers --functions compress,disk_report --log-level DEBUG"""


def build_parser():
    parser = cli.build_parser("runworkers", __doc__.splitlines()[0], EPILOG)
    parser.add_argument("--name", help="worker name (default: worker.name from the config)")
    parser.add_argument("--threads", type=int, help="threads (default: worker.threads)")
    parser.add_argument("--processes", type=int,
                        help="worker processes (default: worker.processes)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics there (default: worker.metrics)")
    parser.add_argument("--functions", help="comma-separated functions to serve "
                                            "(default: all configured functions and @tasks)")
    return parser


def choose_functions(config, tasks, wanted):
    """The functions to serve: all configured + all @tasks, or the ``--functions`` list."""
    available = set(config.functions) | set(tasks)
    if not wanted:
        if not available:
            raise UsageError("nothing to serve: the config has no functions and the plugins "
                             "register no @task")
        return sorted(available)
    chosen = [f.strip() for f in wanted.split(",") if f.strip()]
    if not chosen:
        raise UsageError(f"--functions: expected one or more function names, got {wanted!r}")
    unknown = [f for f in chosen if f not in available]
    if unknown:
        raise UsageError(f"--functions: unknown function(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(sorted(available))}")
    return chosen


def warn_about_trust(config):
    """One line for each risky setting the config allows (a server off loopback without a
    key is refused at start: see gearman_frame.config.protected_mode), and the functions
    that opt out of signing."""
    for line in config.warnings():
        log.warning("%s", line)
    unsigned = [name for name, fn in config.functions.items() if fn.allow_unsigned]
    if config.keyring is not None and unsigned:
        log.info("functions taking unsigned jobs (allow_unsigned): %s", ", ".join(unsigned))


def main(argv=None):
    args = build_parser().parse_args(argv)
    overrides = {key: (flag, value) for key, flag, value in
                 (("worker.threads", "--threads", args.threads),
                  ("worker.processes", "--processes", args.processes),
                  ("worker.metrics", "--metrics", args.metrics),
                  ("worker.name", "--name", args.name)) if value is not None}
    config = cli.load(args, overrides, cron=False)
    protected_mode(config, "a worker")  # before any connection is made
    if config.store.on:
        from gearman_frame.ledger import check_store  # only a worker with a ledger loads it
        check_store(config, "runworkers")
    tasks = import_plugins(config.plugins, config.path)
    config.check_tasks(set(tasks))
    functions = choose_functions(config, tasks, args.functions)
    check_pools(config, args, functions)
    batches = sum(1 for f in functions if getattr(tasks.get(f), "batch", None))
    largest = max([config.worker.threads, *(pool.threads for pool in config.worker.pools)])
    descriptors.ensure(largest, len(config.servers), extra_connections=1 + batches)
    state_dir = config.resolve(STATE_DIR)
    private_folder(state_dir)
    name = worker_name(config.worker.name)

    def serving(config, functions, tasks):
        pools = {pool.name: pool for pool in config.worker.pools}

        def serve(label, instance, pool):
            chosen, threads = functions, config.worker.threads
            if pool is not None:
                chosen, threads = list(pools[pool].functions), pools[pool].threads
            return cli.run(lambda _argv: serve_process(config, chosen, tasks, name, label,
                                                       instance, state_dir, threads),
                           prog="runworkers")
        return serve

    def reload():
        """The config (and plugins) read again, checked as at start; raises if bad."""
        fresh = cli.load(args, overrides, cron=False)
        if fresh.worker.name != config.worker.name:
            raise UsageError("worker.name cannot change on a reload (restart the worker)")
        new_tasks = import_plugins(fresh.plugins, fresh.path, fresh=True)
        fresh.check_tasks(set(new_tasks))
        chosen = choose_functions(fresh, new_tasks, args.functions)
        check_pools(fresh, args, chosen)
        log.info("reloaded %s: functions %s", fresh.path, ",".join(chosen))
        return layout(fresh), serving(fresh, chosen, new_tasks)
    side = on_gone = None
    if config.worker.metrics:
        metrics.prepare_folder(os.path.join(state_dir, f"metrics-{name}"))
        side = functools.partial(metrics.serve, *parse_listen(config.worker.metrics))
        on_gone = metrics.process_gone
        metrics.count_deaths()
        log.info("worker %s: Prometheus metrics on http://%s/metrics", name,
                 config.worker.metrics)
    return Supervisor(name, layout(config), serving(config, functions, tasks), reload,
                      side=side, on_gone=on_gone).run()


def check_pools(config, args, functions):
    """worker.pools must serve exactly the functions; --functions and --processes do not
    mix with pools (each pool names its own)."""
    if not config.worker.pools:
        return
    if args.functions or args.processes:
        raise UsageError("worker.pools names each pool's functions and processes; "
                         "--functions and --processes do not apply")
    config.check_pools(set(functions))


def layout(config):
    """The pool (None: every function) of each worker process the supervisor keeps."""
    if not config.worker.pools:
        return [None] * config.worker.processes
    return [pool.name for pool in config.worker.pools for _ in range(pool.processes)]


def serve_process(config, functions, tasks, name, label, instance, state_dir, threads):
    """One worker process (forked by the supervisor): serve until asked to stop."""
    pool = WorkerPool(config, functions, tasks, state_dir=state_dir,
                      spool_dir=config.resolve(SPOOL_DIR), name=name, label=label,
                      instance=instance, supervised=True, threads=threads)
    install_signal_handlers(pool, supervised=True)
    limit_malloc_arenas()
    pool.start()
    servers = ", ".join(str(s) for s in config.servers)
    if not pool.wait_connected(config.worker.startup_timeout):
        if pool.stop_requested.is_set():
            pool.serve()
            return EXIT_OK
        log.error("worker %s: no job server reachable within %ss (%s)", pool.name,
                  config.worker.startup_timeout, servers)
        pool.request_stop("no server reachable", force=True)
        pool.serve()
        return EXIT_UNREACHABLE
    if label in (None, "p1") and instance == 0:
        warn_about_trust(config)
    log.info("worker %s ready: %d threads, functions %s, servers %s", pool.name,
             pool.thread_count, ",".join(functions), servers)
    pool.wait_all_connected(2.0)  # READY (for systemd too) once its threads all serve
    tell_supervisor(READY)
    pool.serve()
    return EXIT_OK


def entry():
    """Console-script entry point."""
    return cli.run(main, prog="runworkers")


if __name__ == "__main__":
    sys.exit(entry())

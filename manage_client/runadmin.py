#!/usr/bin/env python3
"""runadmin: administer gearmand servers and gearman-frame workers.

Reports queues and workers across every configured server, clears a queue into a dump
file (nothing is lost: `resend` brings it back), stops workers by name, and runs the local
gearmand. Every action that changes state is logged with who did it and how many jobs.
"""
import json
import logging
import os
import sys
import time
from dataclasses import asdict

from gearman_frame import cli
from gearman_frame.config import protected_mode
from gearman_frame.errors import EXIT_FAILED, EXIT_OK, AdminError, FrameError, UsageError
from gearman_frame.files import write_private_file
from gearman_frame.logs import printable
from gearman_frame.queues import CONTROL_RELOAD, CONTROL_SHUTDOWN, control_function
from gearman_frame.signing import key_id, new_key_text, read_key_file

from manage_client.admin import WHO, AdminClient, set_maxqueue
from manage_client.caps_view import CapsView, caps_lines, waiting_of
from manage_client.local_server import cmd_server
from manage_client.runadmin_args import build_parser
from manage_client.hosts import host_rows
from manage_client.schedules_view import lease_holder, schedule_rows
from gearman_frame.wire.admin_protocol import worker_name_of
from manage_client.drain import Drainer, read_dump, resend_jobs, send_control
from manage_client.dead_letters import dead_functions, read_queue
from manage_client.inspect_workers import cancel_running, inspect, render, worker_processes
from manage_client import views

log = logging.getLogger("manage_client.runadmin")

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
    from rich.live import Live  # 29 ms of imports: only with --watch
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
    set_maxqueue(admin, args.function, args.size)
    print(f"maxqueue {args.function} = {args.size} on {len(admin.connections)} server(s)")
    return EXIT_OK


def cmd_apply(admin, config, args):
    limited = {name: fn.maxqueue for name, fn in config.functions.items()
               if fn.maxqueue is not None}
    for function, size in sorted(limited.items()):
        set_maxqueue(admin, function, size)
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
    from manage_client.exporter import serve  # prometheus_client: 7.7 MiB, 41 ms
    host, port = args.listen
    try:
        serve(config.servers, host, port, args.interval, CapsView(config))
    except OSError as err:
        raise FrameError(f"exporter: cannot listen on {host}:{port}: {err.strerror}") from err
    return EXIT_OK


def cmd_web(admin, config, args):
    from manage_client.web import serve  # http.server and the dashboard: only here
    protected_mode(config, "the dashboard")
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
        view = CapsView(config)
        try:
            for line in caps_lines(view.rows(waiting_of(admin.status()))):
                print(line)
        finally:
            view.close()
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
                         "name a new file and rotate: see docs/security.md)")
    try:
        write_private_file(args.file, new_key_text())
    except OSError as err:
        raise UsageError(f"keygen: cannot write {args.file}: {err.strerror}") from err
    kid = key_id(read_key_file(args.file, None, "keygen"))
    print(f"wrote a new key to {args.file} (key id {kid})")
    return EXIT_OK


def cmd_reaper(config):
    """One pass of the reaper (gearman_frame.sending.reaper); exit 2 without a ledger."""
    from gearman_frame.ledger import ledger_of  # only this command needs it
    from gearman_frame.sending.reaper import Reaper
    with ledger_of(config, "the reaper needs the job ledger") as ledger:
        print(Reaper(config, ledger).run_once().describe())
    return EXIT_OK


def cmd_workflows(config, args):
    """Running and recent workflows (or one, step by step) from the ledger."""
    from gearman_frame.ledger import ledger_of  # only this command needs it
    from gearman_frame.ledger.flows import Flows
    from gearman_frame.sending import workflow_table as table
    with ledger_of(config, "workflows live in the job ledger") as ledger:
        flows = Flows(ledger)
        found = ([w for w in [flows.get(args.id)] if w is not None] if args.id
                 else flows.recent(max(1, args.limit), args.running))
        if args.id and not found:
            raise UsageError(f"no workflow {args.id} in the ledger ({ledger.where})")
        for workflow in found:
            print(json.dumps(table.workflow_object(flows, workflow)) if args.json else
                  "\n".join(table.workflow_lines(flows, workflow)) if args.id else
                  table.summary_line(flows, workflow))
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
    if args.command == "init":  # writes the config: none to read yet
        from .starter import write_starter
        print(write_starter(args.folder, args.port), end="")
        return EXIT_OK
    config = cli.load(args, connect=args.command != "server")
    if args.command == "server":
        return cmd_server(config, args)
    if args.command == "schedules":
        return cmd_schedules(config, args)
    if args.command == "reaper":
        return cmd_reaper(config)
    if args.command == "workflows":
        return cmd_workflows(config, args)
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

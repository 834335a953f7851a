#!/usr/bin/env python3
"""sendjob: send jobs to gearman-frame workers (one job, a plugin's batch, the outbox).

A background send or a plugin also delivers what waits in the outbox afterwards, for at
most AUTO_FLUSH_BUDGET seconds and only if no other sendjob is flushing it; a foreground
`run` never touches the outbox; `flush` delivers all of it.
"""
import argparse
import json
import os
import logging
import re
import signal
import sys
import threading

from gearman_frame import cli, tasks
from gearman_frame.config import protected_mode
from gearman_frame.delays import due_at, parse_duration, parse_time
from gearman_frame.envelope import dumps
from gearman_frame.logs import cut
from gearman_frame.errors import EXIT_FAILED, EXIT_OK, FrameError, OutboxError, UsageError
from gearman_frame.wire import PRIORITIES

from send_job_client.clients import OUTBOX, JobClient
from send_job_client.plugins import load_plugin, parse_plugin_args, run_plugin
from send_job_client.progress import FollowedJob, progress_display
from send_job_client.lookup import print_result, remember
from send_job_client.scheduler import Scheduler
from send_job_client.looking_up import cmd_result, cmd_results, cmd_status
from send_job_client.workflow_commands import (add_parsers as add_workflow_parsers,
                                               cmd_workflow, cmd_workflow_status)
from gearman_frame.workflows.steps import is_workflow_id

log = logging.getLogger("send_job_client.scheduler")

EPILOG = """values in key=value (and --arg):
  numbers (3, -1.5), true/false, null and JSON ([1,2], {"a":1}, "quoted") are typed;
  anything else is a string. To send the string "3", write key='"3"'.

examples:
  sendjob run compress path=/var/log/big.log
  sendjob run disk_report mount=/ --json
  sendjob run reverse --arg hello --timeout 5
  sendjob run cat_data --data 'raw payload'
  sendjob run compress path=/x --background --priority high
  sendjob run backup host=db1 --in 10m          # held by gearmand until then
  sendjob run report --at 2026-12-01T06:00:00Z
  sendjob plugin eg --count 20
  sendjob run compress path=/x --background --json   # {"id": ...}: keep the id
  sendjob result ID --wait 60       # its result (client.results names the channel)
  sendjob status ID                 # queued, running (with progress), done or unknown
  sendjob results --failed --since 2h
  sendjob results --follow --json   # each result as it arrives
  sendjob chain 'fetch url=https://example.org' 'resize width=300' 'publish'
  sendjob chord 'square n=1' 'square n=2' 'square n=3' 'total'   # the last: the callback
  sendjob status wf-...             # a workflow: each step, its status, host and time
  sendjob flush
  sendjob scheduler                 # fire the config's schedules (one per host is fine)"""

#: Seconds a background send or a plugin spends delivering older outbox jobs after its own.
AUTO_FLUSH_BUDGET = 5.0
#: Seconds `sendjob plugin NAME --wait` waits for its background jobs' results.
PLUGIN_WAIT = 600.0
#: Seconds each sendjob spends first collecting its result channel (client.results).
AUTO_COLLECT_BUDGET = 2.0
#: Seconds `sendjob flush` waits for another sendjob that is flushing the same outbox.
FLUSH_WAIT = 60.0

_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def build_parser():
    parser = cli.build_parser("sendjob", __doc__.splitlines()[0], EPILOG)
    commands = cli.subcommands(parser)
    run = commands.add_parser("run", help="send one job")
    run.add_argument("function")
    run.add_argument("fields", nargs="*", metavar="key=value", help="the job's kwargs")
    run.add_argument("--arg", action="append", default=[], metavar="VALUE",
                     help="a positional argument (repeatable)")
    raw = run.add_mutually_exclusive_group()
    raw.add_argument("--data", help="send this raw payload instead of a JSON job ('-': read "
                                    "it from stdin, bytes exactly)")
    raw.add_argument("--data-file", metavar="FILE",
                     help="send the bytes of FILE as a raw payload")
    run.add_argument("--background", action="store_true", help="queue it and return")
    later = run.add_mutually_exclusive_group()
    later.add_argument("--in", dest="delay", metavar="DURATION", type=duration_arg,
                       help="queue it to start after DURATION (30s, 10m, 2h; implies "
                            "--background)")
    later.add_argument("--at", metavar="TIME", type=time_arg,
                       help="queue it to start at TIME (ISO 8601 with a zone; a past time "
                            "runs now; implies --background)")
    run.add_argument("--key", metavar="KEY",
                     help="idempotency key: every job sent with KEY (from any sender) gets "
                          "the outcome of one run (needs store.url)")
    run.add_argument("--priority", choices=list(PRIORITIES), default="normal")
    run.add_argument("--timeout", type=float, help="seconds per attempt (default: config)")
    run.add_argument("--json", action="store_true", help="print the result object as JSON")
    run.add_argument("--follow", action="store_true",
                     help="print the command's output while it runs, then the result")
    plugin = commands.add_parser("plugin", help="run plugins/NAME.py")
    plugin.add_argument("name")
    plugin.add_argument("--wait", nargs="?", type=cli.seconds, const=PLUGIN_WAIT,
                        metavar="SECONDS", help="for a background plugin: collect each "
                        "job's result from client.results (up to SECONDS, default "
                        f"{PLUGIN_WAIT:g}) and hand it to on_result")
    plugin.add_argument("plugin_args", nargs=argparse.REMAINDER)
    result = commands.add_parser("result", help="a finished job's result, from the store")
    result.add_argument("id")
    result.add_argument("--wait", type=cli.seconds, default=0.0, metavar="SECONDS",
                        help="collect the result channel until it arrives, this long")
    result.add_argument("--json", action="store_true")
    status = commands.add_parser("status", help="queued, running, done or unknown")
    status.add_argument("id")
    status.add_argument("--json", action="store_true")
    listing = commands.add_parser("results", help="list the result store")
    listing.add_argument("--function")
    listing.add_argument("--failed", action="store_true", help="only jobs that did not end ok")
    listing.add_argument("--since", metavar="TIME", help="received since: seconds ago "
                         "(3600), a duration (30m, 2h, 7d) or an ISO 8601 time")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--follow", action="store_true",
                         help="collect the channel and print each result as it arrives")
    commands.add_parser("scheduler", help="fire the config's schedules until stopped "
                        "(run one on each of two hosts: each occurrence still fires once)")
    add_workflow_parsers(commands, cli.seconds)
    flush = commands.add_parser("flush", help="deliver what waits in the outbox")
    flush.add_argument("--any-server", action="store_true",
                       help="also send jobs in doubt (their server took the request but "
                            "never answered) to other servers now; they may run twice")
    return parser


def parse_value(text):
    """Type a command-line value (see the epilog)."""
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if _NUMBER.match(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    if text[:1] in "[{\"":
        try:
            return json.loads(text)
        except ValueError as err:
            raise UsageError(f"value {cut(text, 60)!r} looks like JSON but is not: "
                             f"{err}") from err
        except RecursionError as err:
            raise UsageError(f"value {cut(text, 60)!r}: JSON nested too deeply") from err
    if not _is_text(text):  # bytes that are not UTF-8 (argv decoded with surrogateescape)
        return os.fsencode(text)
    return text


def _is_text(text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_fields(items):
    """``key=value`` strings into kwargs; a malformed one is a UsageError."""
    fields = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _KEY.match(key):
            raise UsageError(f"expected key=value with a name for key, got {item!r}")
        if key in fields:
            raise UsageError(f"field {key!r} given twice")
        fields[key] = parse_value(value)
    return fields


def cmd_run(client, args):
    kwargs = parse_fields(args.fields)
    positional = [parse_value(a) for a in args.arg]
    data = raw_payload(args)
    if args.key is not None and not args.key:
        raise UsageError("--key: expected a non-empty idempotency key")
    if args.key is not None and data is not None:
        raise UsageError("--key applies to JSON jobs: not with --data (a raw payload "
                         "carries no job id)")
    if data is not None and (kwargs or positional):
        raise UsageError("--data sends a raw payload: give no key=value or --arg with it")
    delayed = args.delay is not None or args.at is not None
    if args.follow and (args.background or delayed or data is not None):
        raise UsageError("--follow streams a foreground JSON job's output: not with "
                         "--background, --in, --at or --data")
    if args.background or delayed:
        try:
            at = due_at(args.at, args.delay)
        except ValueError as err:
            raise UsageError(f"--{'at' if args.at is not None else 'in'}: {err}") from err
        delivery = client.submit_background(args.function, *positional,
                                            priority=args.priority, data=data, at=at,
                                            idempotency_key=args.key, **kwargs)
        print(json.dumps({"id": delivery.id, "handle": delivery.handle,
                          "server": delivery.server, "outbox": delivery.outbox})
              if args.json else (OUTBOX if delivery.outbox else delivery.handle))
        return EXIT_OK
    nobody = _say_if_nobody_serves(client, args.function)
    with FollowedJob(args.function, sys.stdout, sys.stderr) as followed:
        result = client.submit(args.function, *positional, priority=args.priority,
                               data=data, on_output=followed.output if args.follow else None,
                               on_progress=followed.progress if args.follow else None,
                               idempotency_key=args.key, **kwargs)
    nobody.set()  # answered: nothing more to say
    try:
        client.record_result(args.function, positional, kwargs, result)
    except FrameError as err:  # the job ran; a store that cannot take it is a warning
        print(f"sendjob: warning: result not recorded: {err}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(dumps(result.to_dict()) + b"\n")
    elif followed.streamed:  # the output was shown as it came: only how it ended is left
        if not result.ok:
            print(f"sendjob: job {result.id} {result.status}: {result.error}",
                  file=sys.stderr)
    else:
        _print_result(result, raw=data is not None)
    return EXIT_OK if result.ok else EXIT_FAILED


def _say_if_nobody_serves(client, function):
    """Beside a foreground job, in a thread: if no server lists a worker for the function,
    one warning line at once (the job still waits as configured). Returns an Event that
    silences it once the job is answered."""
    import threading
    answered = threading.Event()

    def look():
        from gearman_frame.wire.served import workers_for
        servers = client.config.servers
        if workers_for(servers, function) == 0 and not answered.is_set():
            print(f"sendjob: warning: no worker serves {function!r} on any server "
                  f"({', '.join(str(s) for s in servers)}); the job waits for one "
                  f"(up to {client.timeout:g}s x {client.dispatcher.resend + 1} attempts)",
                  file=sys.stderr, flush=True)
    threading.Thread(target=look, daemon=True, name="nobody-serves").start()
    return answered


def raw_payload(args):
    """The bytes of ``--data`` (argv bytes as given, even if not UTF-8; ``-`` is stdin)
    or ``--data-file``; None for a JSON job."""
    if args.data_file is not None:
        try:
            with open(args.data_file, "rb") as handle:
                return handle.read()
        except OSError as err:
            raise UsageError(f"--data-file {args.data_file}: {err.strerror}") from err
    if args.data == "-":
        return sys.stdin.buffer.read()
    return None if args.data is None else os.fsencode(args.data)


def _print_result(result, raw=False):
    print_result(result.to_dict(), raw)


def cmd_plugin(client, args, config):
    module = load_plugin(args.name)
    wait, rest = _wait_flag(args.wait, list(args.plugin_args))
    plugin_args = parse_plugin_args(module, args.name, rest)
    if wait is not None and not config.client.results:
        raise UsageError("--wait collects the results of background jobs from their "
                         "channel: set client.results in the config")
    total = module.count(plugin_args) if hasattr(module, "count") else None
    with progress_display(args.name, sys.stdout, total) as show, tasks.using(client):
        report = run_plugin(module, args.name, plugin_args, config, client, progress=show,
                            wait=wait)
    if report.unfinished:
        print(f"{args.name}: {report.unfinished} result(s) did not arrive within {wait:g}s "
              "(look them up later with sendjob result ID)", file=sys.stderr)
    print(f"{args.name}: {report.sent} sent, {report.ok} ok, {report.failed} failed"
          + (f", {report.outbox} kept in the outbox" if report.outbox else ""))
    for job, result in report.failures[:10]:
        print(f"  failed: {job.function} {job.id}: {result.error}", file=sys.stderr)
    return EXIT_OK if report.failed == 0 else EXIT_FAILED


def _wait_flag(given, plugin_args):
    """``--wait [SECONDS]`` may also come right after the plugin's name."""
    if plugin_args and plugin_args[0] == "--wait":
        plugin_args.pop(0)
        given = PLUGIN_WAIT
        if plugin_args and re.fullmatch(r"\d+(\.\d+)?", plugin_args[0]):
            given = float(plugin_args.pop(0))
    return given, plugin_args


def cmd_flush(client, args):
    report = client.flush_outbox(wait=FLUSH_WAIT, any_server=args.any_server)
    if report.busy:
        print(f"outbox: another sendjob kept flushing {client.outbox.path} for {FLUSH_WAIT:g}s; "
              f"{report.remaining} waiting", file=sys.stderr)
        return EXIT_FAILED
    print(f"outbox: {report.delivered} delivered, {report.remaining} waiting")
    return EXIT_OK if report.remaining == 0 else EXIT_FAILED


def cmd_scheduler(client, config):
    if not config.schedules and not config.store.on:
        raise UsageError(f"{config.path or 'the defaults'}: no schedules to run and no "
                         "ledger to reap (add a 'schedules:' section, or store.url)")
    protected_mode(config, "the scheduler")
    stop = threading.Event()

    def stopping(signum, _frame):
        log.info("scheduler: %s, stopping", signal.Signals(signum).name)
        stop.set()
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    Scheduler(client, config).run(stop)
    return EXIT_OK


def duration_arg(text):
    """argparse type: a duration (``30s``, ``10m``, ``2h``)."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {err}") from None


def time_arg(text):
    """argparse type: an ISO 8601 time with a zone, as epoch seconds."""
    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {err}") from None


def auto_collect(client):
    """Take what waits on the result channel into the store, within a budget; never fails
    the command (a problem is a warning on stderr)."""
    if not client.config.client.results:
        return
    try:
        client.collect_results(wait=AUTO_COLLECT_BUDGET)
    except FrameError as err:
        print(f"sendjob: warning: results not collected: {err}", file=sys.stderr)


def auto_flush(client):
    """Deliver older outbox jobs within a budget; never fails the command that sent its own
    job fine (a broken outbox is reported on stderr)."""
    try:
        if len(client.outbox):
            client.flush_outbox(budget=AUTO_FLUSH_BUDGET)
    except OutboxError as err:
        print(f"sendjob: warning: {err}", file=sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    timeout = getattr(args, "timeout", None)
    config = cli.load(args, {"client.timeout": ("--timeout", timeout)}
                      if timeout is not None else None)
    remember(config.path, config.resolve(config.client.result_store))
    with JobClient(config) as client:
        if args.command == "status" and is_workflow_id(args.id):
            return cmd_workflow_status(client, args)
        if args.command in ("chain", "group", "chord"):
            return cmd_workflow(client, args, parse_fields)
        if args.command in ("result", "status", "results") and not \
                getattr(args, "follow", False):
            auto_collect(client)
            return {"result": cmd_result, "status": cmd_status,
                    "results": cmd_results}[args.command](client, args)
        if args.command == "results":
            return cmd_results(client, args)
        auto_collect(client)
        if args.command == "flush":
            return cmd_flush(client, args)
        if args.command == "scheduler":
            return cmd_scheduler(client, config)
        if args.command == "run":
            code = cmd_run(client, args)
            if args.background or args.delay is not None or args.at is not None:
                auto_flush(client)
            return code
        code = cmd_plugin(client, args, config)
        auto_flush(client)
        return code


def entry():
    """Console-script entry point."""
    return cli.run(main, prog="sendjob")


if __name__ == "__main__":
    sys.exit(entry())

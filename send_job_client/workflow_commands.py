"""``sendjob chain|group|chord`` and ``sendjob status WF_ID``: each step one quoted
``FUNCTION k=v ...``; the workflow's last result printed like ``sendjob run``'s."""
from __future__ import annotations

import json
import shlex
import sys

from gearman_frame.errors import EXIT_FAILED, EXIT_OK
from gearman_frame.envelope import dumps
from gearman_frame.errors import UsageError
from gearman_frame.sending.workflow_table import workflow_lines, workflow_object
from gearman_frame.tasks import import_plugins, registered
from gearman_frame.workflows.canvas import Signature, chain, chord, group

from .lookup import print_result
from .workflows import flows_of, wait_workflow


def add_parsers(commands, parse_timeout) -> None:
    """The three commands' parsers."""
    helps = {"chain": "run steps one after another, each getting the one before's outcome",
             "group": "run steps side by side",
             "chord": "run steps side by side, then the last one with all their outcomes"}
    for kind, text in helps.items():
        parser = commands.add_parser(kind, help=text)
        parser.add_argument("steps", nargs="*", metavar="'FUNCTION k=v ...'",
                            help="a step: its function and its key=value fields, quoted")
        parser.add_argument("--on-failure", metavar="'FUNCTION k=v ...'",
                            help="a step run once if a step fails for good (it gets the "
                                 "failed step's result)")
        parser.add_argument("--background", action="store_true",
                            help="print the workflow id and return")
        parser.add_argument("--timeout", type=parse_timeout, metavar="SECONDS",
                            help="stop waiting after this long (the workflow goes on)")
        parser.add_argument("--json", action="store_true",
                            help="print the result object as JSON")


def parse_step(text: str, where: str, parse_fields) -> Signature:
    """``'FUNCTION k=v ...'`` as a step; UsageError naming ``where``."""
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise UsageError(f"{where}: {err} in {text!r}") from err
    if not words:
        raise UsageError(f"{where} is empty: expected 'FUNCTION k=v ...'")
    try:
        return Signature(words[0], (), parse_fields(words[1:]))
    except UsageError as err:
        raise UsageError(f"{where} ({words[0]}): {err}") from err


def cmd_workflow(client, args, parse_fields) -> int:
    kind = args.command
    if not args.steps:
        raise UsageError(f"sendjob {kind}: a {kind} of nothing: give at least one step "
                         "('FUNCTION k=v ...')")
    steps = [parse_step(text, f"step {n}", parse_fields) for n, text in enumerate(args.steps, 1)]
    failure = (parse_step(args.on_failure, "--on-failure", parse_fields)
               if args.on_failure else None)
    if kind == "chord" and len(steps) < 2:
        raise UsageError("sendjob chord: give the members, then the callback (at least two "
                         "steps)")
    flow = (chain(*steps, on_failure=failure) if kind == "chain" else
            group(*steps, on_failure=failure) if kind == "group" else
            chord(group(*steps[:-1]), steps[-1], on_failure=failure))
    config = client.config
    if config.plugins and any(s.function not in config.functions
                              and s.function not in registered() for s in steps):
        import_plugins(config.plugins, config.path)  # its tasks are steps too
    try:
        workflow = client.put_workflow(flow)
    except ValueError as err:
        raise UsageError(f"sendjob {kind}: {err}") from err
    if args.background:
        print(json.dumps({"workflow": workflow}) if args.json else workflow)
        return EXIT_OK
    result = wait_workflow(client, workflow, args.timeout)
    if args.json:
        sys.stdout.buffer.write(dumps({**result.to_dict(), "workflow": workflow}) + b"\n")
    else:
        print_result(result.to_dict())
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_workflow_status(client, args) -> int:
    flows = flows_of(client)
    found = flows.get(args.id)
    if found is None:
        print(json.dumps({"id": args.id, "state": "unknown"}) if args.json
              else f"id={args.id} state=unknown")
        return EXIT_OK
    if args.json:
        print(json.dumps(workflow_object(flows, found)))
    else:
        print("\n".join(workflow_lines(flows, found)))
    return EXIT_OK

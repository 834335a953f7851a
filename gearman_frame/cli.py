"""What the three command-line tools share: the common flags, config loading with CLI
precedence, logging set-up, and the mapping of every error to one line and an exit code."""
from __future__ import annotations

import argparse
import dataclasses
import math
import logging
import sys
from typing import Any, Callable, NoReturn

from .addresses import parse_listen
from .config import ENV_CONFIG, Config, load_config
from .errors import EXIT_FAILED, EXIT_USAGE, FrameError
from .logs import setup_logging

log = logging.getLogger(__name__)

EXIT_CODES_EPILOG = """exit codes:
  0  success
  1  the job or operation failed
  2  bad usage or bad config
  3  no job server reachable"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors exit 2 with one line (argparse's own code is 2 too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def port(text: str) -> int:
    """argparse type: a TCP port number, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def listen(text: str) -> tuple[str, int]:
    """argparse type: ``HOST:PORT`` to listen on, as ``(host, port)``."""
    try:
        return parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser(prog: str, description: str, epilog: str = "") -> ArgumentParser:
    """A parser with the flags every command takes."""
    parser = ArgumentParser(prog=prog, description=description,
                            epilog=f"{epilog}\n\n{EXIT_CODES_EPILOG}".strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common_flags(parser)
    from . import __version__
    parser.add_argument("--version", action="version",
                        version=f"{prog} (gearman-frame) {__version__}")
    return parser


def _add_common_flags(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument("--config", metavar="FILE", default=default,
                        help=f"config file (default: ${ENV_CONFIG}, then ./config.yaml)")
    parser.add_argument("--servers", metavar="HOST:PORT,...", default=default,
                        help="job servers, overriding the config and $GEARMAN_FRAME_SERVERS")
    parser.add_argument("--log-level", metavar="LEVEL", type=str.upper, default=default,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="log level, overriding the config")


class SubcommandParser(ArgumentParser):
    """A subcommand's parser: it takes the common flags too, so they may come before or
    after the subcommand (``sendjob run f --config c.yaml``); given before, they are kept
    unless given again after."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_common_flags(self, default=argparse.SUPPRESS)


def subcommands(parser: argparse.ArgumentParser) -> Any:
    """``parser.add_subparsers`` for a command with subcommands (see SubcommandParser)."""
    return parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                 parser_class=SubcommandParser)


def load(args: argparse.Namespace, overrides: dict | None = None, connect: bool = True,
         cron: bool = True) -> Config:
    """Load the config for parsed ``args`` (CLI > env > file > defaults, one validator)
    and set up logs. ``overrides``: more ``{key path: (flag, value)}`` from the command;
    ``connect=False`` for a command that opens no connection (no TLS files read);
    ``cron=False`` for a worker, which fires no schedule (croniter costs 4 MiB)."""
    flags = {"servers": ("--servers", args.servers)} if getattr(args, "servers", None) else {}
    config = load_config(args.config, overrides={**flags, **(overrides or {})},
                         connect=connect, cron=cron)
    settings = config.logging
    if settings.file:  # a relative file is beside the config, like every path in it
        settings = dataclasses.replace(settings, file=config.resolve(settings.file))
    setup_logging(settings, level=args.log_level)
    return config


def run(main: Callable[[list[str] | None], int], argv: list[str] | None = None,
        prog: str | None = None) -> int:
    """Call ``main(argv)``; turn any gearman-frame error into one line and its exit code."""
    prog = prog or sys.argv[0]
    try:
        return main(argv)
    except FrameError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_FAILED

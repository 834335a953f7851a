#!/usr/bin/env python3
"""runadmin: administer gearmand servers and gearman-frame workers.

Subcommands arrive as they are built; ``server`` runs the embedded local gearmand with a
persistent SQLite queue under var/.
"""
import logging
import sys

from gearman_frame import cli
from gearman_frame.errors import EXIT_OK
from gearman_frame.server import QUEUE_BUILTIN, QUEUE_SQLITE, LocalGearmand

log = logging.getLogger("manage_client.runadmin")

#: Where ``runadmin server`` keeps gearmand's pidfile, log and queue (relative to the config).
DEFAULT_DATA_DIR = "var/gearmand"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

EPILOG = """examples:
  runadmin server start                 # local gearmand on the configured port, SQLite queue
  runadmin server status
  runadmin server stop"""


def build_parser():
    parser = cli.build_parser("runadmin", __doc__.splitlines()[0], EPILOG)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server = commands.add_parser("server", help="start, stop or inspect the local gearmand")
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument("--port", type=int, help="port (default: the first configured "
                                                 "loopback server's, else 4730)")
    server.add_argument("--data-dir", help=f"pidfile, log and queue folder "
                                           f"(default: {DEFAULT_DATA_DIR} beside the config)")
    server.add_argument("--queue", choices=[QUEUE_SQLITE, QUEUE_BUILTIN], default=QUEUE_SQLITE,
                        help="persistent SQLite queue (default) or gearmand's in-memory one")
    return parser


def local_server(config, args):
    """The LocalGearmand that ``runadmin server`` controls for this config and flags."""
    local = [s for s in config.servers if s.host in LOOPBACK_HOSTS]
    port = args.port or (local[0].port if local else 4730)
    host = local[0].host if local and local[0].host != "localhost" else "127.0.0.1"
    data_dir = args.data_dir or config.resolve(DEFAULT_DATA_DIR)
    return LocalGearmand(data_dir, port=port, host=host, queue=args.queue)


def cmd_server(config, args):
    server = local_server(config, args)
    if args.action == "start":
        pid = server.start()
        log.info("server start: gearmand %s pid %s queue %s", server.address, pid, server.queue)
        print(f"gearmand started: pid {pid}, {server.address}, data {server.data_dir}")
    elif args.action == "stop":
        stopped = server.stop()
        log.info("server stop: gearmand %s %s", server.address,
                 "stopped" if stopped else "was not running")
        print(f"gearmand {'stopped' if stopped else 'was not running'} on {server.address}")
    else:
        status = server.status()
        print(status.describe())
        return EXIT_OK if status.running else 1
    return EXIT_OK


def main(argv=None):
    args = build_parser().parse_args(argv)
    config = cli.load(args)
    return {"server": cmd_server}[args.command](config, args)


def entry():
    """Console-script entry point."""
    return cli.run(main, prog="runadmin")


if __name__ == "__main__":
    sys.exit(entry())

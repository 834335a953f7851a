"""``python -m gearman_frame check``: load and validate a config, print what it says."""
from __future__ import annotations

import argparse
import json
import sys

from . import cli


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser("python -m gearman_frame", __doc__,
                              "example:\n  python -m gearman_frame check --config config.yaml")
    parser.add_argument("command", choices=["check"], help="what to do")
    parser.add_argument("--json", action="store_true", help="print the config as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = cli.load(args)
    summary = {
        "config": config.path,
        "servers": [str(s) for s in config.servers],
        "functions": sorted(config.functions),
        "plugins": list(config.plugins),
        "worker": {"name": config.worker.name, "threads": config.worker.threads},
        "schedules": {s.name: s.spec for s in config.schedules},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, prog="python -m gearman_frame"))

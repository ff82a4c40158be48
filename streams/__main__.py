"""``python -m streams usage|commands [--group G] [--namespace N] [--name NAME]``.

The usage worker runs on the plain consumer loop unless ``HERO_USAGE_RUNNER=faust`` picks the
Faust usage agent; the command processor is a Faust agent.
"""

from __future__ import annotations

import argparse
import re

from hero.config import HeroSettings
from streams._usage_plain import run_plain
from streams.app import ROLES, run_worker


def _name(text: str) -> str:
    """``usage``, ``usage-2`` .. ``usage-8`` or ``commands`` (the whole string): it names a file."""
    if re.fullmatch(r"usage(-[2-8])?|commands", text) is None:
        raise argparse.ArgumentTypeError(
            f"--name must be usage, usage-2..8 or commands, got {text!r}"
        )
    return text


def _group(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", text) is None:
        raise argparse.ArgumentTypeError(f"--group must be a consumer group name, got {text!r}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description="HERO's stream processors")
    parser.add_argument("role", choices=ROLES, help="the agent this worker runs")
    parser.add_argument("--group", type=_group, help="the Kafka consumer group (hero-ROLE)")
    parser.add_argument("--namespace", type=_group, default="usage", help="windows' key prefix")
    parser.add_argument("--name", type=_name, help="this worker (its health file); ROLE")
    args = parser.parse_args()
    if args.name is not None and not args.name.startswith(args.role):
        parser.error(f"--name {args.name} is not a {args.role} worker")
    settings = HeroSettings()
    if args.role == "usage" and settings.usage_runner == "plain":
        run_plain(settings, group=args.group, namespace=args.namespace, name=args.name)
        return
    run_worker(settings, args.role, group=args.group, namespace=args.namespace, name=args.name)


if __name__ == "__main__":
    main()

"""Record the golden history: the event log of full in-process demo runs, as JSONL.

    .venv/bin/python -m tests.golden.record [--runs 4] [--out tests/golden/demo-history.jsonl.gz]

Runs ``hero demo --in-process`` ``--runs`` times over one fresh store in a temporary
directory (each run negotiates, scales, migrates, tops up and bills its own fleet), then
writes every recorded envelope, in position order, one compact JSON object a line, gzipped.
The ids and times differ on every recording; the golden test checks agreement between the
model and its views, not fixed values, so any recording serves.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hero.store import open_store, recorded_after

DEFAULT_OUT = Path(__file__).parent / "demo-history.jsonl.gz"


def record(runs: int, out: Path) -> int:
    """Write the log of ``runs`` demo runs to ``out``; returns the number of events."""
    hero = Path(sys.executable).parent / "hero"
    with tempfile.TemporaryDirectory(prefix="hero-golden-") as data_dir:
        for _ in range(runs):
            subprocess.run(
                [str(hero), "demo", "--in-process", "--json", "--data-dir", data_dir],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        store = open_store(f"sqlite:///{data_dir}/events.db")
        try:
            lines = [
                json.dumps(json.loads(row.envelope_json), separators=(",", ":"), sort_keys=True)
                for row in recorded_after(store, 0)
            ]
        finally:
            store.close()
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as sink:
        sink.write("\n".join(lines) + "\n")
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    count = record(args.runs, args.out)
    print(f"{count} events written to {args.out}")


if __name__ == "__main__":
    main()

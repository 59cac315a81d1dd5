"""Figures of the reliability runs: each test appends a row; ``make chaos`` prints the table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

COLUMNS = ("cases", "tasks", "kills", "faults", "violations")


def report(name: str, **figures: int) -> None:
    target = os.environ.get("SHENGTU_CHAOS_REPORT")
    if not target:
        return
    row = {"name": name, **{c: int(figures.get(c, 0)) for c in COLUMNS}}
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    width = max([len(r["name"]) for r in rows] + [len("total")])
    lines = [f"{'run'.ljust(width)}  " + "  ".join(c.rjust(10) for c in COLUMNS)]
    for r in [*rows, {"name": "total", **{c: sum(r[c] for r in rows) for c in COLUMNS}}]:
        lines.append(
            f"{r['name'].ljust(width)}  " + "  ".join(str(r[c]).rjust(10) for c in COLUMNS)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))

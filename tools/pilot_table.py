"""A markdown table of training runs (recipe pilots): command, minutes, load, validation mean IoU.

    python tools/pilot_table.py runs/pilots [--base tools/camvid_pilots/base.yaml]

Reads each run folder's ``command`` and ``DONE`` (written by the script that ran it: seconds and
load average), ``metrics.json`` (the final table, on the config's validation split) and
``best.json`` (the best periodic evaluation).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path


def run_row(folder):
    folder = Path(folder)
    command = (folder / "command").read_text().strip() if (folder / "command").is_file() else ""
    done = (folder / "DONE").read_text() if (folder / "DONE").is_file() else ""
    seconds = re.search(r"seconds=(\d+)", done)
    load = re.search(r"load=([\d.]+) ([\d.]+) ([\d.]+)", done)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else None
    best = json.loads((folder / "best.json").read_text()) if (folder / "best.json").is_file() else None
    return {
        "name": folder.name, "command": command,
        "minutes": round(int(seconds.group(1)) / 60, 1) if seconds else None,
        "load": load.group(3) if load else None,
        "mean_iou": round(100 * metrics["mean_iou"], 2) if metrics else None,
        "best": (round(100 * best["mean_iou"], 2), best["step"]) if best else None,
        "per_class": {k: round(100 * v, 1) for k, v in metrics["per_class_iou"].items() if v is not None}
        if metrics else {},
    }


def markdown(rows):
    lines = ["| run | command | minutes (load, 15-min avg) | held-out mIoU, final | best (step) |",
             "|---|---|---|---|---|"]
    for r in rows:
        best = f"{r['best'][0]} ({r['best'][1]})" if r["best"] else ""
        lines.append(f"| {r['name']} | `{r['command']}` | {r['minutes']} ({r['load']}) | {r['mean_iou']} | {best} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    rows = [run_row(f) for f in sorted(Path(args.folder).iterdir()) if (f / "command").is_file()]
    print(markdown(rows))
    print()
    for r in rows:
        if r["per_class"]:
            print(f"{r['name']}: " + ", ".join(f"{k} {v}" for k, v in r["per_class"].items()))


if __name__ == "__main__":
    main()

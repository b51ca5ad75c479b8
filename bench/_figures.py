"""The one table `make bench` ends with: every script's figures beside their targets and baselines.

A script calls `figure(...)`, which prints one tab-separated line tagged FIGURE among its own output;
`python bench/_figures.py < all-output` prints those lines as a table. (Not a benchmark itself:
`make bench` runs only scripts whose names do not start with an underscore.)
"""

import sys

_TAG = "FIGURE"
_COLUMNS = ("figure", "measured", "target", "baseline", "verdict", "method")


def figure(name: str, measured: str, target: str, baseline: str, met: bool, method: str) -> None:
    print("\t".join((_TAG, name, measured, target, baseline, "met" if met else "MISSED", method)))


def main() -> int:
    rows = [line.rstrip("\n").split("\t")[1:] for line in sys.stdin if line.startswith(_TAG + "\t")]
    widths = [max(len(row[column]) for row in [_COLUMNS, *rows]) for column in range(len(_COLUMNS))]
    for row in [_COLUMNS, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())

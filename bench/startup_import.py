"""Cold-start cost: `import app` against `import pynamodb.models` (target: at most 1.2x).

Each import runs in a fresh interpreter, alternating between the two so that load
on a shared machine hits both alike; prints the medians and their ratio.

    PYTHONPATH=. python bench/startup_import.py [runs]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_seconds(module: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main(runs: int) -> None:
    times: dict[str, list[float]] = {"app": [], "pynamodb.models": []}
    for _ in range(runs):
        for module in times:
            times[module].append(import_seconds(module))
    medians = {module: statistics.median(values) for module, values in times.items()}
    for module, median in medians.items():
        print(f"import {module:<16} median {median * 1000:6.1f} ms over {runs} runs")
    print(f"ratio app / pynamodb.models: {medians['app'] / medians['pynamodb.models']:.2f} (target <= 1.20)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 21)

"""Start-up cost of the Lambda: `import app` next to `import pynamodb.models` alone.

    python bench/startup.py [--samples 40] [--bundle dist/prod/package/deployment.zip]

Each sample is a fresh interpreter that first imports pynamodb.models alone,
then the rest of the app, timing both; `import app` costs the sum. Measuring
both in one process makes the ratio immune to the load on the machine at that
moment, which shifts whole processes. Interpreter start-up is left out (the
same for both, it would only dilute the ratio). Both run from compiled bytecode.
Target: `import app` at most 1.2 times `import pynamodb.models`.

Without --bundle it measures the source tree (bytecode in a temporary cache,
so nothing is written next to the sources). With --bundle it measures the
deployment package as Lambda runs it: unpacked, read-only (no bytecode
written), nothing on the path but the bundle and the botocore installed here
(standing in for the runtime's).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import botocore

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.2
_TIMED_IMPORTS = (
    "import sys, time\n"
    "sys.path[:0] = {path!r}\n"
    "start = time.perf_counter()\n"
    "import pynamodb.models\n"
    "middle = time.perf_counter()\n"
    "import app\n"
    "print(middle - start, time.perf_counter() - start)\n"
)


class Interpreter:
    """How to start the fresh interpreter each sample runs in."""

    def __init__(self, path: list[str], environment: dict[str, str], options: tuple[str, ...] = ()):
        self.path, self.environment, self.options = path, environment, options

    def time_imports(self) -> tuple[float, float]:
        """Seconds to import pynamodb.models alone, and then the whole app."""
        result = subprocess.run(
            [sys.executable, *self.options, "-c", _TIMED_IMPORTS.format(path=self.path)],
            env=self.environment,
            capture_output=True,
            text=True,
            check=True,
        )
        pynamodb_seconds, app_seconds = result.stdout.split()
        return float(pynamodb_seconds), float(app_seconds)


def source_tree(cache: Path) -> Interpreter:
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(cache)
    return Interpreter([str(ROOT)], environment)


def unpacked_bundle(bundle: Path, task_root: Path) -> Interpreter:
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(task_root)
    runtime = str(Path(botocore.__file__).parent.parent)
    # -I -S: no site-packages and no PYTHONPATH, the runtime's botocore after the bundle; -B: read-only.
    return Interpreter([str(task_root), runtime], dict(os.environ), options=("-I", "-S", "-B"))


def measure(interpreter: Interpreter, samples: int) -> None:
    interpreter.time_imports()  # compiles (source tree) and warms the file cache
    pairs = [interpreter.time_imports() for _ in range(samples)]
    pynamodb_models, app = (statistics.median(seconds) for seconds in zip(*pairs, strict=True))
    print(f"import pynamodb.models  median {pynamodb_models * 1000:6.1f} ms")
    print(f"import app              median {app * 1000:6.1f} ms")
    ratio = statistics.median(app_seconds / pynamodb_seconds for pynamodb_seconds, app_seconds in pairs)
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"ratio app / pynamodb.models: {ratio:.2f} (median of {samples}), {verdict} the {TARGET_RATIO} target")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--bundle", type=Path, help="a deployment.zip made by `make package`")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.bundle:
            print(f"{args.bundle} unpacked, read-only, botocore {botocore.__version__}; {args.samples} samples")
            interpreter = unpacked_bundle(args.bundle, Path(scratch))
        else:
            print(f"source tree, compiled bytecode; {args.samples} samples")
            interpreter = source_tree(Path(scratch))
        measure(interpreter, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())

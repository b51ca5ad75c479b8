"""Build what CloudFormation deploys: `python -m deploy.package --stage prod --stack paylambda-prod --out dist/prod`.

The app is copied into a clean build directory (no caches, no local state);
pynamodb goes into its `vendor/` without botocore, which the Lambda runtime
provides; `chalice package` runs twice: once to learn the functions and roles
it generates, once with the merge template that adds the tables, the
notification queue, the IAM policies and the custom domain. The result is
`<out>/package/sam.json` and `deployment.zip`, ready for `aws cloudformation package`.

The package is made for one stack: the notification queue is named after it,
as the tables are, and Chalice writes that name into the consumer's event source.

The Lambda runtime is the interpreter that runs this (Chalice's rule), so the
bytecode compiled here (and added to the zip) is bytecode the runtime loads.
"""

import argparse
import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from chalice.constants import MISSING_DEPENDENCIES_TEMPLATE

from . import template

ROOT = Path(__file__).resolve().parent.parent
# Installed without their dependencies: pynamodb's botocore is in every Lambda Python runtime.
VENDOR_REQUIREMENTS = "requirements-vendor.txt"
# The oldest botocore the bundle is tested with (tests/test_deploy.py runs it on this one).
OLDEST_BOTOCORE = "1.29.0"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
# embit ships a libsecp256k1 for each platform it knows; Lambda (x86_64, the template's
# Architectures) loads only this one.
EMBIT_PREBUILT = "embit/util/prebuilt/"
EMBIT_LAMBDA_LIBRARY = EMBIT_PREBUILT + "libsecp256k1_linux_x86_64.so"
# `make run` and the tests: never deployed.
LOCAL_STAGE = "local"
_PROJECT_FILES = ("app.py", "requirements.txt", VENDOR_REQUIREMENTS)


def lambda_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def stage_project(build_dir: Path) -> Path:
    """A copy of exactly what Chalice packages, so nothing local ends up in the bundle."""
    project = build_dir / "project"
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    for name in _PROJECT_FILES:
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".chalice").mkdir()
    for config in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(config, project / ".chalice" / config.name)
    return project


def install_vendor(project: Path) -> None:
    """pip with --no-deps: Chalice's requirements.txt cannot say that, and would bundle botocore."""
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    _run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + ["--only-binary=:all:", "--platform", LAMBDA_PLATFORM, "--implementation", "cp"]
        + ["--python-version", python_version, "--no-compile", "--target", str(project / "vendor")]
        + ["--requirement", str(project / VENDOR_REQUIREMENTS)],
        cwd=project,
    )


def add_bytecode(bundle: Path) -> None:
    """Add compiled bytecode for every module in the zip (Chalice ships sources only).

    /var/task is read-only, so without it every cold start compiles every module
    it imports: over a quarter of a cold `import app` (bench/startup.py --bundle).
    Unchecked-hash pycs stay valid whatever timestamps the zip gives the sources,
    and the runtime is this interpreter's version, so it loads them.
    """
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(bundle, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.extractall(scratch, [name for name in archive.namelist() if name.endswith(".py")])
        compileall.compile_dir(
            scratch, quiet=2, workers=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
        )
        shipped = set(archive.namelist())
        for pyc in sorted(Path(scratch).rglob("*.pyc")):
            name = pyc.relative_to(scratch).as_posix()
            if name not in shipped:
                archive.write(pyc, name)


def drop_other_platforms(bundle: Path) -> None:
    kept = bundle.with_suffix(".kept")
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(kept, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if not info.filename.startswith(EMBIT_PREBUILT) or info.filename == EMBIT_LAMBDA_LIBRARY:
                target.writestr(info, source.read(info))
    kept.replace(bundle)


def check_stage(stage: str) -> None:
    """A stage deploys only when .chalice/config.json says how; say what is missing otherwise."""
    stages = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]
    deployable = sorted(set(stages) - {LOCAL_STAGE})
    if stage == LOCAL_STAGE:
        raise SystemExit(f"the {LOCAL_STAGE} stage is for make run; deploy one of {deployable}")
    if stage not in stages:
        raise SystemExit(
            f'no stage {stage!r} in .chalice/config.json (stages: {deployable}): add one under "stages", '
            f"e.g. a copy of prod with its own STAGE"
        )


def queue_name(stack: str) -> str:
    return f"{stack}-notifications"


def chalice_package(project: Path, stage: str, stack: str, out: Path, merge_template: Path | None = None) -> dict:
    if out.exists():
        shutil.rmtree(out)
    command = [str(Path(sys.executable).parent / "chalice"), "package", "--stage", stage]
    if merge_template is not None:
        command += ["--merge-template", str(merge_template)]
    environment = {
        # The region only fills the CLI's client configuration; the template uses AWS::Region.
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        # Chalice imports the app to find its functions: the consumers' queues are named then.
        "NOTIFICATIONS_QUEUE": queue_name(stack),
        "CHECKS_QUEUE": f"{stack}-checks",
    }
    output = _run([*command, str(out)], cwd=project, env=environment)
    # Chalice only warns when a dependency has no Linux wheel and cannot be built; the function would fail.
    if MISSING_DEPENDENCIES_TEMPLATE.strip().splitlines()[0] in output:
        raise SystemExit(f"chalice package left dependencies out of the bundle:\n{output}")
    return json.loads((out / "sam.json").read_text())


def build(stage: str, out: Path, stack: str | None = None) -> Path:
    """Package the app for `stage` and the stack (paylambda-STAGE unless named) into `out`.

    Returns the directory with sam.json and deployment.zip.
    """
    from chalicelib.models import ALL_MODELS

    check_stage(stage)
    stack = stack or f"paylambda-{stage}"
    out = out.resolve()
    project = stage_project(out)
    install_vendor(project)
    chalice_template = chalice_package(project, stage, stack, out / "chalice")
    template.check_stack_name(stack, template.FUNCTION_ACCESS)
    merge = out / "merge.json"
    merge.write_text(json.dumps(template.merge_template(chalice_template, ALL_MODELS), indent=2))
    chalice_package(project, stage, stack, out / "package", merge_template=merge)
    drop_other_platforms(out / "package" / "deployment.zip")
    add_bytecode(out / "package" / "deployment.zip")
    shutil.rmtree(out / "chalice")
    return out / "package"


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--stack", help="the CloudFormation stack it is for (default paylambda-STAGE)")
    parser.add_argument("--out", type=Path, default=None, help="build directory (default dist/STAGE)")
    args = parser.parse_args()
    package = build(args.stage, args.out or ROOT / "dist" / args.stage, args.stack)
    size = (package / "deployment.zip").stat().st_size
    print(f"{package / 'sam.json'} ({lambda_runtime()}), deployment.zip {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

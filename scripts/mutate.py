"""`make mutate`: mutation testing (mutmut 3) of the money paths, one module at a time.

Each module is mutated in its own scratch copy of the work tree (.mutate/<module>/, where mutmut
keeps its `mutants/` and its cache, so a re-run only re-tests what changed), restricted to the
functions that compute or move money, and tested with the few test files that exercise them
(mutmut then runs, per mutant, only those of their tests that reach the mutated function).
Prints a table of scores and every surviving mutant as a diff.

Equivalent mutants are marked in the code with `# pragma: no mutate` and a comment saying why.

    python scripts/mutate.py                  every module
    python scripts/mutate.py payments wallet  just these
    MUTATE_CHILDREN=1 python scripts/mutate.py  at most one test process at a time (a shared machine)
"""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutate"
MUTMUT = Path(sys.executable).parent / "mutmut"
TARGET = 0.90


@dataclass(frozen=True)
class Module:
    path: str
    # mutmut mutant-name globs: x_<function>, xǁ<Class>ǁ<method>.
    functions: tuple[str, ...]
    # pytest arguments choosing the tests (files, -k expressions).
    tests: tuple[str, ...]
    # Regular expressions for lines inside those functions that move no money (identifiers,
    # search keys, log text), left unmutated so a run stays in minutes.
    skip_lines: tuple[str, ...] = ()
    # The DynamoDB-backed tests start moto and the chain server on fixed ports per process, so
    # their mutants run one at a time; the pure modules' run in parallel.
    children: int = 1


# The pure tests of the payment rules, without the ones that go through the API or the queue.
PURE = "not (watcher or unpaid_expires or sqs or hops or rounded_up_to or dust or retry)"

MODULES = {
    "payments": Module(
        "chalicelib/payments/rules.py",
        ("*",),
        (
            "tests/test_payment_states.py",
            "tests/test_properties.py",
            "tests/test_money_boundaries.py",
            "tests/test_mutation_kills_rules.py",
            "-k",
            PURE,
        ),
        children=2,
    ),
    "invoices": Module(
        "chalicelib/billing/invoices.py",
        (
            "x_create_",
            "x_amount_due_sats",
            "x__check_dust",
            "x_format_btc",
            "x__bip21",
            "x_current_status",
            "x__amount",
            "x__price",
            "x__tax_included",
        ),
        (
            "tests/test_money_boundaries.py",
            "tests/test_properties.py",
            "tests/test_api_invoices.py",
            "tests/test_invoice_integrity.py",
            "tests/test_mutation_kills_invoices.py",
            "tests/test_shop_invoices.py",
            "-k",
            "rounded or dust or unpaid_expires or expiration_follows or guid_makes or next_address"
            " or advance_the_index or index_is_not_reserved or address_serves or mutation_kills"
            " or price_as_number or bad_field or missing_price or no_plain_number or json_numbers"
            " or tax_included or no_price",
        ),
        skip_lines=(
            r"^\s+(token|facade|invoice_token|store_status|store_order_id|store_item_code|store_buyer_email|base_url|watch_network)=",
            r"^\s+\*\*\{$",
            r"^\s+\"(tax_included|buyer)\": ",
            r"^\s+status = \"new\"$",
            # Who may create, with which URLs: access rules, tested in test_api_invoices and test_shop_*.
            r"caller\.facade == ",
            r"raise BadRequest\(\"(An invoice created without|guid is already used)",
            r"_PLACEHOLDER_FIELDS|fields\[attribute\]",
        ),
    ),
    "stores": Module(
        "chalicelib/billing/stores.py",
        ("x_reserve_address_index", "x_invoicing_store"),
        (
            "tests/test_money_boundaries.py",
            "tests/test_api_invoices.py",
            "tests/test_invoice_integrity.py",
            "-k",
            "wallet or next_address or fifty or index or address_serves",
        ),
    ),
    "wallet": Module(
        "chalicelib/payments/wallet.py",
        ("xǁWalletǁaddress", "xǁWalletǁaddresses", "x__receive_branch", "x__check_index", "x__is_int"),
        ("tests/test_wallet.py", "tests/test_money_boundaries.py", "-k", "not boundaries or address_index"),
        children=2,
    ),
    "watcher": Module(
        "chalicelib/payments/watcher.py",
        ("x__record", "x_terms_of", "x_stored_payments"),
        (
            "tests/test_money_boundaries.py",
            "tests/test_payments.py",
            "-k",
            "watcher or unpaid_expires or (test_payments and not racing and not outage and not status_endpoint)",
        ),
    ),
    "notifications": Module(
        "chalicelib/messaging/notifications.py",
        ("x_events_for", "x_enqueue", "x_handle_message", "x_deliver_pending", "x__attempt"),
        (
            "tests/test_money_boundaries.py",
            "tests/test_notifications.py",
            "-k",
            "sqs or hops or failing_receiver or without_full or expired_partial or never_accepts or lost_queue",
        ),
    ),
}


def _globs(module: Module) -> list[str]:
    stem = module.path.removesuffix(".py").replace("/", ".")
    return [f"{stem}.{name}*" for name in module.functions]


def _copy_tree(destination: Path) -> None:
    """The work tree as it is now (tracked and new files), over the scratch copy, keeping mutmut's state."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _configure(destination: Path, module: Module) -> None:
    tests = ", ".join(json.dumps(argument) for argument in module.tests)
    skipped = ", ".join(json.dumps(pattern) for pattern in module.skip_lines)
    config = (ROOT / "pyproject.toml").read_text() + (
        "\n[tool.mutmut]\n"
        'source_paths = ["chalicelib/"]\n'
        f"only_mutate = [{json.dumps(module.path)}]\n"
        f"pytest_add_cli_args_test_selection = [{tests}]\n"
        f"do_not_mutate_patterns = [{skipped}]\n"
        'pytest_add_cli_args = ["-x"]\n'
        'also_copy = ["app.py", "scripts/"]\n'
    )
    (destination / "pyproject.toml").write_text(config)


def run_module(name: str, module: Module) -> dict:
    destination = WORK / name
    destination.mkdir(parents=True, exist_ok=True)
    _copy_tree(destination)
    _configure(destination, module)
    meta_path = destination / "mutants" / f"{module.path}.meta"
    _retry_survivors(meta_path)
    started = time.monotonic()
    log = destination / "mutmut.log"
    with log.open("w") as output:
        process = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(_children(module)), *_globs(module)],
            cwd=destination,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    seconds = time.monotonic() - started
    if process.returncode != 0 or not meta_path.exists():
        print(f"{name}: mutmut failed (exit {process.returncode}); see {log}", file=sys.stderr)
        return {"name": name, "total": 0, "killed": 0, "survivors": [], "seconds": seconds, "failed": True}
    codes = json.loads(meta_path.read_text())["exit_code_by_key"]
    wanted = set(_matching(codes, _globs(module)))
    # Exit code 0: every test passed with the mutant in place (it survived); None: not run.
    survivors = sorted(key for key in wanted if codes[key] in (0, None))
    return {
        "name": name,
        "total": len(wanted),
        "killed": len(wanted) - len(survivors),
        "survivors": survivors,
        "seconds": seconds,
        "failed": False,
        "directory": destination,
    }


def _children(module: Module) -> int:
    limit = os.environ.get("MUTATE_CHILDREN")
    return min(module.children, int(limit)) if limit else module.children


def _retry_survivors(meta_path: Path) -> None:
    """Forget the survivors of the last run, so that new tests get their chance at them.

    mutmut keeps every result while the function it mutates is unchanged; killed stays killed.
    """
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["exit_code_by_key"] = {key: None if code == 0 else code for key, code in meta["exit_code_by_key"].items()}
        meta_path.write_text(json.dumps(meta))


def _matching(keys, globs: list[str]):
    from fnmatch import fnmatch

    return [key for key in keys if any(fnmatch(key, pattern) for pattern in globs)]


def _show(directory: Path, mutant: str) -> str:
    shown = subprocess.run([str(MUTMUT), "show", mutant], cwd=directory, capture_output=True, text=True).stdout
    return "\n".join(line for line in shown.splitlines() if line[:1] in "-+" and line[:3] not in ("---", "+++"))


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        print(f"unknown module(s): {', '.join(unknown)}; known: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    results = [run_module(name, MODULES[name]) for name in names or MODULES]
    print(f"\n{'module':<14} {'mutants':>7} {'killed':>7} {'score':>7} {'time':>7}")
    for result in results:
        score = result["killed"] / result["total"] if result["total"] else 0.0
        flag = "FAILED" if result["failed"] else ("" if score >= TARGET else f"below {TARGET:.0%}")
        print(
            f"{result['name']:<14} {result['total']:>7} {result['killed']:>7} {score:>7.1%} "
            f"{result['seconds']:>6.0f}s {flag}"
        )
    for result in results:
        for mutant in result["survivors"]:
            print(f"\nsurvived: {mutant}\n{_show(result['directory'], mutant)}")
    below = [r for r in results if r["failed"] or not r["total"] or r["killed"] / r["total"] < TARGET]
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Cold start of the API function: `import app`, then its first signed GET and first signed POST.

    PYTHONPATH=. python bench/cold_start.py [--samples 5]

Starts its own moto DynamoDB server, makes a store, a paired merchant token and one invoice, and signs
two requests as a BitPay client would (GET /invoices/{id}, POST /invoices) into API Gateway proxy
events. Each sample is then a fresh interpreter that imports the app and hands it both events, as
Lambda's first invocations would: it reports its own CPU time (user + system, from the first line of
the script, so the interpreter's start-up is left out) and its peak RSS (VmHWM). CPU time rather than
wall time, because the machine's load stretches waits, not work; moto's time is in the other process.
Targets (issue 13): CPU at most 60 % of the baseline, peak RSS at most 55 MiB; and whether the
function could run at 256 MB: its peak RSS against 256 MiB (Python's Lambda runtime client runs in
the same process, so this is what Lambda reports as memory used), and the cold start's CPU time
stretched by 256 MB's share of a vCPU (Lambda gives a full one at 1,769 MB) against 512 MB's.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _figures import figure  # noqa: E402

# Measured on main before the models shared one botocore client: two runs of this script on the
# loaded 2-core dev box gave medians of 781 and 876 ms, and 81.0 and 80.5 MiB.
BASELINE_CPU_MS = 830.0
BASELINE_RSS_MIB = 80.5
TARGET_CPU_RATIO = 0.60
TARGET_RSS_MIB = 55
SMALL_MEMORY_MB, MEMORY_MB, FULL_VCPU_MB = 256, 512, 1769

_CHILD = """
import time
start = time.process_time()
import json, sys
events = json.loads(sys.stdin.read())
import app
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "paylambda-bench-APIHandler", 512, "cold-start"
    def get_remaining_time_in_millis(self):
        return 30000
statuses = [app.app(event, Context())["statusCode"] for event in events]
cpu = time.process_time() - start
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
print(json.dumps({"statuses": statuses, "cpu_ms": cpu * 1000, "rss_mib": int(peak) / 1024}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(port: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "DYNAMODB_ENDPOINT": f"http://127.0.0.1:{port}",
        "STAGE": "bench",
        "RATE_SOURCE": "fixed",
        "BITCOIN_NETWORK": "main",
    }


def _signed_events() -> list[dict]:
    """A GET of an existing invoice and a POST of a new one, signed by a paired merchant client."""
    from bitpay import key_utils
    from embit.bip32 import HDKey
    from embit.networks import NETWORKS

    from app import app
    from chalicelib.billing import stores
    from chalicelib.models import create_tables
    from chalicelib.security import tokens, users
    from tests.lambda_events import DEPLOYMENTS, LambdaClient, proxy_event

    create_tables()
    owner = users.create_user("bench-owner", "correct horse battery")
    wallet = HDKey.from_seed(os.urandom(32)).derive("m/84h/0h/0h").to_public().to_base58(NETWORKS["main"]["zpub"])
    store = stores.create_store(owner.login, "Bench shop", wallet=wallet)
    client = LambdaClient(app, DEPLOYMENTS[0])
    code = tokens.create_pairing_code(store.store_id, "merchant").pairing_code
    token = client.claim(code)
    order = {"price": 12.5, "currency": "USD", "token": token, "orderId": "cold-1"}
    status, created = client.request("POST", "/invoices", payload=order)
    assert status == 200, created
    invoice_id = created["data"]["id"]

    def signed(method: str, resource: str, path_parameters: dict | None, query: list | None, payload: dict | None):
        body = json.dumps(payload) if payload is not None else None
        url = DEPLOYMENTS[0].client_base_url + resource.replace("{invoice_id}", invoice_id)
        if query:
            url += "?" + "&".join(f"{name}={value}" for name, value in query)
        headers = {
            "x-identity": key_utils.get_compressed_public_key_from_pem(client.pem),
            "x-signature": key_utils.sign(url + (body or ""), client.pem),
        }
        return proxy_event(DEPLOYMENTS[0], method, resource, path_parameters, query, body, headers)

    return [
        signed("GET", "/invoices/{invoice_id}", {"invoice_id": invoice_id}, [("token", token)], None),
        signed("POST", "/invoices", None, None, {**order, "orderId": "cold-2"}),
    ]


def _sample(environment: dict[str, str], events: list[dict]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], input=json.dumps(events), env=environment, capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(result.stderr)
    measured = json.loads(result.stdout.splitlines()[-1])
    assert measured["statuses"] == [200, 200], measured
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()

    port = _free_port()
    environment = _environment(port)
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT))
    from scripts.local_aws import start_local_aws

    server = start_local_aws(port)
    try:
        events = _signed_events()
        _sample(environment, events)  # compiles bytecode and warms the file cache
        samples = [_sample(environment, events) for _ in range(args.samples)]
    finally:
        server.stop()
    cpu = statistics.median(sample["cpu_ms"] for sample in samples)
    rss = statistics.median(sample["rss_mib"] for sample in samples)
    target_cpu = BASELINE_CPU_MS * TARGET_CPU_RATIO
    print(f"cold start (import app + first signed GET + first POST), median of {args.samples} fresh interpreters")
    print(f"  CPU  {cpu:6.0f} ms   target <= {target_cpu:.0f} ms (60 % of baseline)  baseline {BASELINE_CPU_MS:.0f} ms")
    print(f"  RSS  {rss:6.1f} MiB  target <= {TARGET_RSS_MIB} MiB  baseline {BASELINE_RSS_MIB:.1f} MiB")
    small_share, share = SMALL_MEMORY_MB / FULL_VCPU_MB, MEMORY_MB / FULL_VCPU_MB
    print(
        f"  at {SMALL_MEMORY_MB} MB: peak RSS {rss:.0f} of {SMALL_MEMORY_MB} MiB; "
        f"cold start {cpu / small_share:.0f} ms "
        f"at {small_share:.2f} vCPU (at {MEMORY_MB} MB: {cpu / share:.0f} ms at {share:.2f} vCPU); a warm request's "
        "CPU-bound part is billed the same either way (half the memory, twice the time), its DynamoDB waits half"
    )
    method = "fresh interpreter: import app + first signed GET + POST, process CPU / VmHWM, moto apart"
    figure(
        f"API at {SMALL_MEMORY_MB} MB: RSS, cold start",
        f"{rss:.0f} MiB, {cpu / small_share / 1000:.1f} s",
        f"< {SMALL_MEMORY_MB} MiB",
        f"{cpu / share / 1000:.1f} s at {MEMORY_MB} MB",
        rss < SMALL_MEMORY_MB,
        "peak RSS; cold CPU / vCPU share (memory / 1,769 MB)",
    )
    figure(
        "cold start CPU",
        f"{cpu:.0f} ms",
        f"<= {target_cpu:.0f} ms",
        f"{BASELINE_CPU_MS:.0f} ms",
        cpu <= target_cpu,
        method,
    )
    figure(
        "cold start RSS",
        f"{rss:.1f} MiB",
        f"<= {TARGET_RSS_MIB} MiB",
        f"{BASELINE_RSS_MIB:.1f} MiB",
        rss <= TARGET_RSS_MIB,
        method,
    )
    return 0 if cpu <= target_cpu and rss <= TARGET_RSS_MIB else 1


if __name__ == "__main__":
    sys.exit(main())

"""What the hosted pages cost: cold start, render time and page weight.

    PYTHONPATH=. python bench/pages.py

Prints figures measured in this run, with ratios between them rather than
absolute targets (machines differ). Needs no database: the pages are rendered
from an invoice view built in memory.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_IMPORT_PROBE = """
import sys, time
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
print(elapsed, int("jinja2" in sys.modules), int("segno" in sys.modules))
"""


def cold_import(module: str, runs: int = 5) -> tuple[float, bool, bool]:
    """Median seconds to import `module` in a fresh interpreter, and whether jinja2/segno came with it."""
    timings, loaded = [], None
    for _ in range(runs):
        output = subprocess.run(
            [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        ).stdout.split()
        timings.append(float(output[0]))
        loaded = (output[1] == "1", output[2] == "1")
    return statistics.median(timings), *loaded


def timed(function, runs: int) -> float:
    start = time.perf_counter()
    for _ in range(runs):
        function()
    return (time.perf_counter() - start) / runs


def invoice_view() -> dict:
    now = int(time.time() * 1000)
    address = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    return {
        "id": "N2xpkM5apby8qNfwLFVced",
        "url": "https://pay.example.com/api/invoice?id=N2xpkM5apby8qNfwLFVced",
        "status": "new",
        "exceptionStatus": False,
        "price": 10.0,
        "currency": "USD",
        "itemDesc": "Blue T-shirt, size M",
        "invoiceTime": now,
        "expirationTime": now + 15 * 60_000,
        "currentTime": now,
        "btcDue": "0.00015385",
        "rate": 65000.0,
        "bitcoinAddress": address,
        "paymentCodes": {"BTC": {"BIP21": f"bitcoin:{address}?amount=0.00015385"}},
    }


def main() -> None:
    sys.path.insert(0, str(ROOT))
    api_only, _, _ = cold_import("chalicelib.api")
    whole_app, jinja_at_start, segno_at_start = cold_import("app")
    print(f"cold import, API blueprint only:    {api_only * 1000:7.1f} ms")
    print(f"cold import, app with the pages:    {whole_app * 1000:7.1f} ms  (x{whole_app / api_only:.2f})")
    print(f"jinja2 loaded at start-up: {jinja_at_start}; segno loaded at start-up: {segno_at_start}")

    from chalicelib import checkout
    from chalicelib.rendering import Visit
    from chalicelib.web import ApiRequest

    view = invoice_view()
    request = ApiRequest(method="GET", headers={"host": "pay.example.com"}, path="/invoice", route_path="/invoice")

    def render_checkout() -> str:
        return (
            Visit(request)
            .render("checkout.html", invoice=view, store_name="Shop", status_region=checkout.status_region(view))
            .body
        )

    first = timed(render_checkout, 1)
    qr = timed(lambda: checkout.qr_svg(view["paymentCodes"]["BTC"]["BIP21"]), 50)
    region = timed(lambda: checkout.status_region(view), 50)
    warm = timed(render_checkout, 50)
    print(f"checkout page, first render (imports, template compile): {first * 1000:7.2f} ms")
    print(f"checkout page, warm render: {warm * 1000:7.2f} ms (first/warm x{first / warm:.1f})")
    print(f"  of which the QR code (segno SVG): {qr * 1000:7.2f} ms ({qr / warm:.0%} of a render)")
    print(f"  of which the status region (QR included): {region * 1000:7.2f} ms")

    page = render_checkout().encode()
    static = ROOT / "chalicelib" / "static"
    css, js = (static / "paylambda.css").stat().st_size, (static / "paylambda.js").stat().st_size
    print(f"checkout weight: HTML {len(page)} B + CSS {css} B + JS {js} B = {len(page) + css + js} B, no third party")


if __name__ == "__main__":
    main()

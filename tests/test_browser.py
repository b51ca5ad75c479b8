"""The pages in a real browser: headless Debian chromium, driven by Playwright.

`make test` installs chromium where it is missing and the machine allows it
(root with apt-get, as on CI). Where there is no chromium the test is skipped
with its reason shown in the summary. axe-core (package.json, installed by `make test` with npm)
checks every page shown for accessibility violations. Screenshots of every page, on a phone and on
a desktop, go to test-output/browser/.
"""

import csv
import io
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bitpay.client import Client as BitPayClient
from bitpay.key_utils import generate_pem

from tests.api_fixtures import root_only
from tests.conftest import PASSWORD
from tests.payments_support import run_watcher_handlers, sats

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
AXE = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium: `make test` installs Debian's chromium package where it runs as root with apt-get")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshots(request, api_url) -> Path:
    folder = request.config.rootpath / "test-output" / "browser" / ("prefixed" if urlsplit(api_url).path else "root")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _page_with_error_log(context, errors: list[str]):
    """A new page whose script errors and CSP violations (reported on the console) go to `errors`."""
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and errors.append(f"{page.url}: {message.text}"))
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    return page


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.skip("no axe-core: `make test` installs it with npm (package.json)")
    return AXE.read_text()


def _axe_violations(page, axe_source: str) -> list[str]:
    """axe-core's violations on the page as it stands (its script evaluated over the debugging protocol,
    which the pages' Content-Security-Policy does not block)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{page.url}: {violation['id']}: {violation['help']} at {[node['target'] for node in violation['nodes']]}"
        for violation in results["violations"]
    ]


class Pages:
    """Each page looked at: checked by axe-core, and photographed on a desktop and (reloaded) on a phone."""

    def __init__(self, chromium, screenshots: Path, axe_source: str, errors: list[str]):
        self.desktop_context = chromium.new_context(**DESKTOP)
        self.phone_context = chromium.new_context(**PHONE)
        self.desktop = _page_with_error_log(self.desktop_context, errors)
        self.phone = _page_with_error_log(self.phone_context, errors)
        self.screenshots, self.axe_source, self.violations = screenshots, axe_source, []

    def look(self, name: str) -> None:
        self.violations += _axe_violations(self.desktop, self.axe_source)
        self.desktop.screenshot(path=self.screenshots / f"{name}-desktop.png", full_page=True)
        self.phone_context.add_cookies(self.desktop_context.cookies())
        self.phone.goto(self.desktop.url)
        self.violations += _axe_violations(self.phone, self.axe_source)
        self.phone.screenshot(path=self.screenshots / f"{name}-phone.png", full_page=True)

    def close(self) -> None:
        self.desktop_context.close()
        self.phone_context.close()


def _decode_qr(png: bytes) -> list[str]:
    from PIL import Image
    from zxingcpp import BarcodeFormat, read_barcodes

    return [barcode.text for barcode in read_barcodes(Image.open(io.BytesIO(png)), formats=BarcodeFormat.QRCode)]


def test_a_client_is_approved_in_the_browser_and_its_invoice_is_paid_from_the_checkout(
    chromium, api_url, user, store, chain, screenshots, checks_queue, axe_source
):
    client = BitPayClient(api_uri=api_url, pem=generate_pem(), tokens={})
    approval_url = f"{api_url}/api-access-request?pairingCode={client.create_token('merchant')}"

    errors: list[str] = []
    desktop = chromium.new_context(**DESKTOP)
    merchant = _page_with_error_log(desktop, errors)
    merchant.goto(approval_url)
    assert merchant.url.startswith(f"{api_url}/login?next=")
    merchant.get_by_label("Login").fill(user.login)
    merchant.get_by_label("Password").fill(PASSWORD)
    merchant.get_by_role("button", name="Sign in").click()
    merchant.wait_for_url(approval_url)
    assert client.client_id in merchant.locator("dl.facts").inner_text()
    merchant.screenshot(path=screenshots / "approval-desktop.png", full_page=True)
    violations = _axe_violations(merchant, axe_source)

    phone = chromium.new_context(**PHONE)
    phone.add_cookies(desktop.cookies())
    phone_page = _page_with_error_log(phone, errors)
    phone_page.goto(approval_url)
    assert phone_page.get_by_role("button", name="Approve").is_visible()
    phone_page.screenshot(path=screenshots / "approval-phone.png", full_page=True)
    violations += _axe_violations(phone_page, axe_source)

    merchant.get_by_label("For which store?").select_option(label="Test shop")
    merchant.get_by_role("button", name="Approve").click()
    assert merchant.get_by_role("heading", name="Access approved").is_visible()
    merchant.screenshot(path=screenshots / "approved-desktop.png", full_page=True)
    violations += _axe_violations(merchant, axe_source)

    invoice = client.create_invoice({"price": 25, "currency": "USD", "token": client.tokens["merchant"]})

    buyer_context = chromium.new_context(**PHONE)
    buyer_context.grant_permissions(["clipboard-read", "clipboard-write"])
    buyer = _page_with_error_log(buyer_context, errors)
    # The page's own clock, to move it on to its next poll (the region asks every WAITING_POLL_SECONDS while awaiting).
    buyer.clock.install()
    # Nothing cached: the checkout carries its stylesheet and script, so the page is all the browser asks for.
    requested = []
    buyer.on("request", lambda request: requested.append(request.url))
    buyer.goto(invoice["url"])
    # Its stylesheet applies and its script runs (both allowed by their hashes): the checkout's narrow
    # column, and the copy buttons the script shows.
    assert buyer.locator("main").evaluate("main => getComputedStyle(main).maxWidth") == "448px"
    assert buyer.locator("button.copy").first.is_visible()
    qr = buyer.locator("svg.qr")
    assert qr.is_visible()
    assert _decode_qr(qr.screenshot()) == [invoice["paymentUrls"]["BIP21"]]
    assert buyer.locator(".amount").inner_text() == f"{invoice['btcDue']} BTC"
    assert buyer.locator(".amount-fiat").inner_text() == "25.00 USD"
    countdown = buyer.locator(".countdown")
    first_reading = countdown.inner_text()
    buyer.wait_for_function("text => document.querySelector('.countdown').textContent !== text", arg=first_reading)
    buyer.locator("button.copy").nth(1).click()
    assert buyer.evaluate("navigator.clipboard.readText()") == invoice["bitcoinAddress"]
    buyer.screenshot(path=screenshots / "checkout-phone.png", full_page=True)
    violations += _axe_violations(buyer, axe_source)

    merchant.goto(invoice["url"])
    assert merchant.locator("svg.qr").is_visible()
    merchant.screenshot(path=screenshots / "checkout-desktop.png", full_page=True)

    # The buyer pays; the watcher AWS runs every minute sees it; the open page shows it by itself.
    status_requests = []
    buyer.on("request", lambda request: "/invoice/status?" in request.url and status_requests.append(request.url))
    buyer.evaluate("window.notReloaded = true")
    chain.pay(invoice["bitcoinAddress"], sats(invoice))
    run_watcher_handlers(checks_queue)
    buyer.clock.fast_forward(int(buyer.locator(".status-region").get_attribute("data-poll-seconds")) * 1000)
    paid = buyer.get_by_text("Payment received, waiting for confirmation.")
    paid.wait_for(timeout=15_000)
    assert buyer.evaluate("window.notReloaded") is True
    assert status_requests and status_requests[0] == f"{api_url}/invoice/status?id={invoice['id']}"
    assert requested[0] == invoice["url"] and set(requested[1:]) == {status_requests[0]}
    assert buyer.locator("svg.qr").count() == 0
    buyer.screenshot(path=screenshots / "checkout-paid-phone.png", full_page=True)
    violations += _axe_violations(buyer, axe_source)

    assert violations == [], "\n".join(violations)
    assert errors == []
    for context in (desktop, phone, buyer_context):
        context.close()


@root_only
def test_a_merchant_runs_the_shop_from_the_pages_and_every_page_passes_axe(
    chromium, api_url, user, store, screenshots, axe_source
):
    """Sign in, the store's pages, a pairing code, create an invoice, search, export, mark complete."""
    errors: list[str] = []
    pages = Pages(chromium, screenshots, axe_source, errors)
    merchant = pages.desktop
    merchant.goto(f"{api_url}/stores")
    pages.look("login")
    merchant.get_by_label("Login").fill(user.login)
    merchant.get_by_label("Password").fill(PASSWORD)
    merchant.get_by_role("button", name="Sign in").click()
    merchant.wait_for_url(f"{api_url}/stores")
    pages.look("stores")
    merchant.get_by_role("link", name="Test shop").click()
    pages.look("store-settings")
    merchant.get_by_role("link", name="Access tokens").click()
    merchant.get_by_role("button", name="Create pairing code").click()
    assert re.fullmatch(r"\w{7}", merchant.locator("#pairing-code").inner_text())
    pages.look("tokens")
    merchant.get_by_role("link", name="Revoke…").first.click()
    pages.look("token-revoke")

    merchant.get_by_role("link", name="Invoices").click()
    pages.look("invoices-empty")
    merchant.get_by_text("New invoice").click()
    merchant.get_by_label("Amount").fill("1234.5")
    merchant.get_by_label("Currency").select_option("EUR")
    merchant.get_by_label("Order id (optional)").fill("phone-order-9")
    merchant.get_by_label("Description (optional)").fill("Two chairs")
    merchant.get_by_label("Buyer email (optional)").fill("buyer@example.com")
    merchant.get_by_role("button", name="Create invoice").click()
    created = merchant.get_by_role("status")
    assert "Invoice created" in created.inner_text()
    checkout_url = created.get_by_role("link").get_attribute("href")
    invoice_id = checkout_url.rsplit("=", 1)[1]
    pages.look("invoice")

    merchant.get_by_role("link", name="Invoices").click()
    merchant.get_by_label("Invoice id, order id, address or buyer email").fill("buyer@example.com")
    merchant.get_by_role("button", name="Search").click()
    assert merchant.locator("p.total").inner_text() == "1 invoice · Export CSV"
    assert merchant.get_by_role("cell", name="1,234.50 EUR").is_visible()
    pages.look("invoices-search")
    with merchant.expect_download() as download:
        merchant.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(row["invoiceId"], row["orderId"]) for row in rows] == [(invoice_id, "phone-order-9")]

    merchant.get_by_role("link", name=invoice_id).click()
    merchant.get_by_label("Note").fill("Paid by bank transfer")
    merchant.get_by_role("button", name="Mark complete").click()
    assert "marked complete" in merchant.get_by_role("status").inner_text()
    pages.look("invoice-complete")
    merchant.goto(checkout_url)
    assert merchant.get_by_text("Paid. Thank you.").is_visible()
    pages.look("checkout-complete")

    merchant.goto(f"{api_url}/account/password")
    pages.look("password")

    # Without JavaScript: no copy buttons, and a link (and a meta refresh) to follow the invoice; a German browser.
    no_script = chromium.new_context(**PHONE, java_script_enabled=False, locale="de-DE")
    buyer = _page_with_error_log(no_script, errors)
    merchant.goto(f"{api_url}/stores/{store.store_id}/invoices")
    merchant.get_by_text("New invoice").click()
    merchant.get_by_label("Amount").fill("150000")
    merchant.get_by_label("Currency").select_option("JPY")
    merchant.get_by_role("button", name="Create invoice").click()
    buyer.goto(merchant.get_by_role("status").get_by_role("link").get_attribute("href"))
    assert buyer.locator(".amount-fiat").inner_text() == "150,000 JPY"
    assert buyer.locator("button.copy").count() == 2 and not buyer.locator("button.copy").first.is_visible()
    assert buyer.get_by_role("link", name="Status aktualisieren").is_visible()
    assert buyer.get_by_text("Zahlung ausstehend.").is_visible()
    buyer.screenshot(path=screenshots / "checkout-without-javascript-phone.png", full_page=True)

    assert errors == []
    merchant.goto(f"{api_url}/no/such/page")
    pages.look("not-found")
    # The browser logs the page's own status, once on each of the two devices.
    assert (
        errors
        == [f"{api_url}/no/such/page: Failed to load resource: the server responded with a status of 404 (Not Found)"]
        * 2
    )
    assert pages.violations == [], "\n".join(pages.violations)
    pages.close()
    no_script.close()


def test_an_invoice_is_paid_and_confirmed_on_make_runs_chain_from_the_checkouts_own_buttons(
    chromium, local_stack, demo_shop, request
):
    invoice = demo_shop.create_invoice({"price": 12, "currency": "USD", "token": demo_shop.tokens["merchant"]})
    errors: list[str] = []
    context = chromium.new_context(**PHONE)
    buyer = _page_with_error_log(context, errors)
    buyer.goto(invoice["url"])
    assert buyer.get_by_role("complementary", name="Test chain").inner_text().startswith("Test chain (regtest)")
    buyer.evaluate("window.notReloaded = true")

    buyer.get_by_role("button", name="Pay the full amount").click()
    buyer.get_by_text("Payment received, waiting for confirmation.").wait_for(timeout=15_000)
    buyer.get_by_role("button", name="Mine a block").click()
    buyer.get_by_text("Payment confirmed. Thank you.").wait_for(timeout=15_000)
    assert buyer.evaluate("window.notReloaded") is True
    assert errors == []
    # A button the invoice no longer allows says why beside the buttons (the 400 is all the console reports).
    buyer.get_by_role("button", name="Expire now").click()
    buyer.locator(".test-chain-result", has_text="Only a new invoice can expire").wait_for(timeout=5_000)
    assert len(errors) == 1 and "status of 400" in errors[0]
    folder = request.config.rootpath / "test-output" / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    buyer.screenshot(path=folder / "checkout-local-chain-confirmed-phone.png", full_page=True)
    context.close()

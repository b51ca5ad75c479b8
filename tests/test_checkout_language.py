"""The checkout in the buyer's language (Accept-Language), else the store's default; the catalogs are complete."""

import html
import io
import re
from pathlib import Path

import pytest
import requests
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from chalicelib.billing.stores import CHECKOUT_LANGUAGES
from chalicelib.pages.language import LOCALE_DIR
from tests.api_fixtures import root_only
from tests.pages_support import post_form, signed_in, visible_text

ROOT = Path(__file__).parents[1]


def _checkout(url: str, accept_language: str | None) -> requests.Response:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = requests.get(url, headers=headers, timeout=5)
    assert page.status_code == 200
    return page


@root_only
@pytest.mark.parametrize(
    "accept_language, language, awaiting",
    [
        ("de-CH,de;q=0.9,en;q=0.5", "de", "Zahlung ausstehend."),
        ("es", "es", "Esperando el pago."),
        ("ja, fr-FR;q=0.7, en;q=0.3", "fr", "En attente du paiement."),
        ("pt-BR,pt;q=0.9", "pt", "Aguardando o pagamento."),
        ("en-GB,de;q=0.9", "en", "Awaiting payment."),
        ("de;q=0, ja", "en", "Awaiting payment."),
        (None, "en", "Awaiting payment."),
    ],
)
def test_the_checkout_speaks_the_browsers_language(api_url, shop, accept_language, language, awaiting):
    created = shop.create_invoice()
    page = _checkout(created["url"], accept_language)
    assert f'<html lang="{language}">' in page.text and awaiting in visible_text(page.text)
    # Its polls ask for the same language, whatever the browser sends then.
    status_url = html.unescape(re.search(r'data-status-url="([^"]+)"', page.text).group(1))
    assert status_url.endswith(f"id={created['id']}" + ("" if language == "en" else f"&lang={language}"))
    region = requests.get(status_url, timeout=5).json()["statusRegion"]
    assert awaiting in visible_text(region)


@root_only
def test_a_store_default_language_serves_browsers_that_ask_for_none_the_checkout_speaks(api_url, user, store, shop):
    merchant = signed_in(api_url, user.login)
    settings = f"{api_url}/stores/{store.store_id}"
    form = {"name": "Test shop", "default_currency": "USD", "invoice_expiration_minutes": "15", "wallet": store.wallet}
    saved = post_form(
        merchant, settings, settings, action="save", transaction_speed="medium", default_language="fr", **form
    )
    assert saved.status_code == 303
    assert '<option value="fr" selected>Français</option>' in merchant.get(settings).text
    created = shop.create_invoice()
    assert "En attente du paiement." in visible_text(_checkout(created["url"], "ja").text)
    assert "En attente du paiement." in visible_text(_checkout(created["url"], None).text)
    assert "Zahlung ausstehend." in visible_text(_checkout(created["url"], "de").text)

    refused = post_form(
        merchant, settings, settings, action="save", transaction_speed="medium", default_language="xx", **form
    )
    assert refused.status_code == 400 and "checkout language must be one of en, de, es, fr, pt" in refused.text


@root_only
def test_an_unknown_language_asked_of_the_status_poll_is_answered_in_english(api_url, shop):
    created = shop.create_invoice()
    answer = requests.get(f"{api_url}/invoice/status", params={"id": created["id"], "lang": "../../etc"}, timeout=5)
    assert answer.status_code == 200 and "Awaiting payment." in visible_text(answer.json()["statusRegion"])


def test_every_checkout_message_is_translated_and_every_catalog_compiled():
    with open(ROOT / "babel.cfg") as config:
        method_map, options_map = parse_mapping_cfg(config)
    messages = {message for _, _, message, *_ in extract_from_dir(ROOT, method_map, options_map)}
    assert "Awaiting payment." in messages and len(messages) > 20
    for language in set(CHECKOUT_LANGUAGES) - {"en"}:
        folder = LOCALE_DIR / language / "LC_MESSAGES"
        with open(folder / "messages.po", "rb") as po:
            catalog = read_po(po)
        translated = {message.id for message in catalog if message.id and message.string}
        assert messages <= translated, (language, messages - translated)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        # The .mo the Lambda bundle reads is the .po's compilation (run `pybabel compile`, README).
        assert (folder / "messages.mo").read_bytes() == compiled.getvalue(), language

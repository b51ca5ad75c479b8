"""The BitPay-compatible API: every route, and which domain function serves it.

API Gateway (and `chalice local`) match `/invoices/` to `/invoices`, so each
route also answers with a trailing slash, as btcpay-python requires.
"""

import functools
from collections.abc import Callable
from typing import Any

from chalice import Blueprint, CORSConfig

from chalicelib.api import openapi, shapes
from chalicelib.billing import currencies, invoices
from chalicelib.errors import BadRequest, Forbidden, Unauthorized
from chalicelib.models import TokenModel
from chalicelib.payments.rates import currency_name, get_rates
from chalicelib.security import auth, tokens
from chalicelib.web import API_CONTENT_TYPES, ApiRequest, api_errors, chalice_errors, json_response, transport_headers

api = Blueprint(__name__)
api.register_middleware(chalice_errors, "http")


# What the API serves, as declared in `shapes`: the OpenAPI document describes these.
ROUTES: list[shapes.Operation] = []


# Pay buttons on a shop's own pages call these from the browser.
_CORS = CORSConfig(allow_origin="*", allow_headers=["X-Accept-Version", "X-Identity", "X-Signature"])
_CORS_PATHS = ("/invoices", "/rates", "/currencies")


def api_route(path: str, methods: tuple[str, ...] = ("GET",)) -> Callable:
    """Register `view(request, **uri_params) -> body` as a JSON route with the API's error handling.

    Each route must be declared in `shapes` (KeyError otherwise), so none is missing from the document.
    """
    ROUTES.extend(shapes.operation(method, path) for method in methods)

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        cors = _CORS if path in _CORS_PATHS else None

        @api_errors
        def respond(request: ApiRequest, **uri_params: str) -> Any:
            return json_response(view(request, **uri_params))

        @api.route(path, methods=list(methods), content_types=API_CONTENT_TYPES, cors=cors)
        @functools.wraps(view)
        def handler(**uri_params: str) -> Any:
            request = ApiRequest.from_chalice(api.current_request)
            response = respond(request, **uri_params)
            response.headers.update(transport_headers(request))
            return response

        return view

    return register


# Tokens and pairing


@api_route("/tokens", methods=("POST",))
def create_token(request: ApiRequest) -> dict:
    body = shapes.read(shapes.TOKEN_FIELDS, request.json)
    # Sent at all, even empty, a pairingCode makes this a claim: an unknown code is a 404.
    if "pairingCode" in request.json:
        token = tokens.claim(body["pairingCode"], body["id"], address=request.source_ip)
    elif _asks_for_its_own_store(request, body):
        minter = _merchant_token(request)
        token = tokens.create_pairing_code(
            minter.store_id, body["facade"] or "pos", body["label"], minted_by=minter.token
        )
    else:
        token = tokens.request_pairing(
            body["id"], body["facade"] or "merchant", body["label"], address=request.source_ip
        )
    return {"data": [tokens.pairing_view(token)]}


def _asks_for_its_own_store(request: ApiRequest, body: dict) -> bool:
    """A merchant's client asking for another token for its store: no id, or a signed request with its token.

    Anything else naming an id is a client-side pairing request, even with stale signature headers.
    """
    return body["id"] is None or (body["token"] is not None and auth.optional_identity(request) is not None)


def _merchant_token(request: ApiRequest) -> TokenModel:
    """The merchant token of a signed client asking for another token for its store."""
    if auth.request_token(request):
        return auth.authenticate(request, ("merchant",)).token
    caller = auth.optional_identity(request)
    if caller is None:
        raise BadRequest("id (the client's SIN) is required to request a token")
    merchant_tokens = [t for t in tokens.active_for_sin(caller.sin) if t.facade == "merchant"]
    if not merchant_tokens:
        raise Forbidden("Only a client holding a merchant token may request new tokens")
    return merchant_tokens[0]


@api_route("/tokens")
def list_tokens(request: ApiRequest) -> dict:
    caller = auth.optional_identity(request)
    if caller is None:
        raise Unauthorized("GET /tokens must be signed (x-identity, x-signature)")
    return {"data": [{token.facade: token.token} for token in tokens.active_for_sin(caller.sin)]}


# Rates


@api_route("/rates")
def list_rates(request: ApiRequest) -> dict:
    pairs = request.query_value("currencyPairs")
    if pairs:
        return {"data": [_currency_pair_rate(pair) for pair in pairs.split(",") if pair.strip()]}
    return {"data": get_rates().rate_list((request.query_value("cryptoCode") or "BTC").upper())}


def _currency_pair_rate(pair: str) -> dict:
    base, separator, quote = pair.strip().upper().partition("_")
    if not separator:
        raise BadRequest(f"currencyPairs entries look like BTC_USD, not {pair!r}")
    return {
        "name": currency_name(quote),
        "cryptoCode": base,
        "currencyPair": f"{base}_{quote}",
        "code": quote,
        "rate": float(get_rates().rate(base, quote)),
    }


@api_route("/rates/{base}")
def list_rates_for_base(request: ApiRequest, base: str) -> dict:
    return {"data": get_rates().rate_list(base.upper())}


@api_route("/rates/{base}/{quote}")
def get_rate(request: ApiRequest, base: str, quote: str) -> dict:
    base, quote = base.upper(), quote.upper()
    rate = next((item for item in get_rates().rate_list(base) if item["code"] == quote), None)
    if rate is None:
        raise BadRequest(f"Currency {quote} is not supported")
    return {"data": rate}


@api_route("/currencies")
def list_currencies(request: ApiRequest) -> dict:
    """BitPay's currency list (the PHP SDKs read it when they start): what the rate source can invoice in."""
    return {"data": [currencies.bitpay_view(code) for code in get_rates().currencies()]}


# Invoices

_INVOICE_FACADES = ("pos", "merchant")


@api_route("/invoices", methods=("POST",))
def create_invoice(request: ApiRequest) -> dict:
    from chalicelib.messaging import notifications  # its invoice_created notification is written with it

    caller = auth.authenticate_invoice_creator(request)
    invoice = notifications.create_invoice(caller, request.fields, request.base_url)
    view = invoices.public_view if caller.facade == "public" else invoices.full_view
    return {"facade": f"{caller.facade}/invoice", "data": view(invoice, request.base_url)}


@api_route("/invoices")
def search_invoices(request: ApiRequest) -> dict:
    caller = auth.authenticate(request, ("merchant",))
    params = dict(request.query)
    found = invoices.search(caller.store_id, params)
    page = {"data": [invoices.full_view(invoice, request.base_url) for invoice in found]}
    # Beside `data`, where BitPay's clients never look: for callers that page past MAX_OFFSET.
    cursor = invoices.next_cursor(found, params)
    return {**page, "next": cursor} if cursor else page


@api_route("/invoices/{invoice_id}")
def get_invoice(request: ApiRequest, invoice_id: str) -> dict:
    caller = auth.authenticate_optional(request, _INVOICE_FACADES)
    if caller.token is None:
        return {"data": invoices.public_view(invoices.get_public(invoice_id), request.base_url)}
    return {"data": invoices.full_view(invoices.get_for(caller, invoice_id), request.base_url)}


@api_route("/invoices/guid/{guid}")
def get_invoice_by_guid(request: ApiRequest, guid: str) -> dict:
    caller = auth.authenticate(request, _INVOICE_FACADES)
    return {"data": invoices.full_view(invoices.get_by_guid(caller, guid), request.base_url)}


@api_route("/invoices/{invoice_id}", methods=("DELETE",))
def cancel_invoice(request: ApiRequest, invoice_id: str) -> dict:
    from chalicelib.billing import cancellation  # the notification machinery loads only when a merchant cancels

    caller = auth.authenticate(request, ("merchant",))
    return {"data": invoices.full_view(cancellation.cancel(invoices.get_for(caller, invoice_id)), request.base_url)}


@api_route("/invoices/guid/{guid}", methods=("DELETE",))
def cancel_invoice_by_guid(request: ApiRequest, guid: str) -> dict:
    from chalicelib.billing import cancellation

    caller = auth.authenticate(request, ("merchant",))
    return {"data": invoices.full_view(cancellation.cancel(invoices.get_by_guid(caller, guid)), request.base_url)}


@api_route("/invoices/{invoice_id}/notifications", methods=("POST",))
def resend_notification(request: ApiRequest, invoice_id: str) -> dict:
    from chalicelib.messaging import notifications  # boto3 and the delivery code load only when a merchant asks

    notifications.resend(_invoice_for_merchant(request, invoice_id))
    return {"data": "Success"}


def _invoice_for_merchant(request: ApiRequest, invoice_id: str) -> invoices.InvoiceModel:
    """The invoice, for its store's merchant: with a merchant token, or (as BitPay's SDKs send it)
    with the invoice's own token in a request signed by a key that holds a merchant token for the store."""
    invoice = invoices.get_by_invoice_token(invoice_id, auth.request_token(request))
    if invoice is not None:
        auth.authenticate_store_key(request, invoice.store_id)
        return invoice
    return invoices.get_for(auth.authenticate(request, ("merchant",)), invoice_id)


@api_route("/invoice/status")
def invoice_status(request: ApiRequest) -> dict:
    """Public, for the checkout page to poll: the status fields and the page's status region (HTML)."""
    from chalicelib.pages import checkout  # the templates and the QR code load with the first poll, not at start-up

    invoice_id = request.query_value("id")
    if not invoice_id:
        raise BadRequest("id (the invoice id) is required")
    # `lang`: the language the checkout page chose for itself (its link to here carries it).
    return checkout.poll(
        invoices.get_public(invoice_id), request.base_url, request.query_value("lang") or checkout.DEFAULT_LANGUAGE
    )


@functools.cache
def _document() -> dict:
    return openapi.document(tuple(ROUTES))


@api_route("/openapi.json")
def openapi_document(request: ApiRequest) -> dict:
    """Public: the OpenAPI document, made once per process; its server is where it was asked for."""
    return {**_document(), "servers": [{"url": request.base_url}]}

"""The hosted pages: sign-in, stores, access tokens, pairing approval, invoices and the buyer's checkout.

Routes only: each reads its request through a `rendering.Visit` and calls
the domain modules. Forms post application/x-www-form-urlencoded and carry
a CSRF token, which `Visit.respond` checks before any view runs.
"""

import functools
from collections.abc import Callable

from chalice import Blueprint, Response

from chalicelib.api.shapes import INVOICE_STATUSES
from chalicelib.billing import export as invoice_export
from chalicelib.billing import invoices, stores
from chalicelib.billing.currencies import CURRENCIES
from chalicelib.billing.invoices import EXCEPTION_STATUSES
from chalicelib.errors import BadRequest, NotFound, ServiceUnavailable, TooManyRequests, Unauthorized
from chalicelib.models import now_ms
from chalicelib.pages import checkout, language
from chalicelib.pages.rendering import CHECKOUT_CONTENT_SECURITY_POLICY, Visit, local_path
from chalicelib.security import api_keys, sessions, tokens
from chalicelib.security.auth import Caller
from chalicelib.security.identity import InvalidKey, is_valid_sin, sin_from_public_key
from chalicelib.web import API_CONTENT_TYPES, ApiRequest, error_response, transport_headers

pages = Blueprint(__name__)

INVOICES_PER_PAGE = 50
WALLET_PREVIEW_ADDRESSES = 5


def page(path: str, methods: tuple[str, ...] = ("GET",), *, signed_in: bool = True) -> Callable:
    """Register `view(visit, **uri_params) -> Response` as a page; `signed_in` pages send strangers to sign in."""

    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        @pages.route(path, methods=list(methods), content_types=API_CONTENT_TYPES)
        @functools.wraps(view)
        def handler(**uri_params: str) -> Response:
            visit = Visit(ApiRequest.from_chalice(pages.current_request))
            return visit.respond(lambda: view(visit, **uri_params), signed_in=signed_in)

        return view

    return register


@pages.route("/{proxy+}", methods=["GET"], content_types=API_CONTENT_TYPES)
def not_found() -> Response:
    """Every GET no route serves (a mistyped or stale link): a page for a browser, the API's error otherwise.

    API Gateway would answer `{"message": "Missing Authentication Token"}` with a 403; more
    specific routes always win over this greedy one, so it serves only what nothing else does.
    """
    request = ApiRequest.from_chalice(pages.current_request)
    if "text/html" in request.headers.get("accept", ""):
        visit = Visit(request)
        return visit.respond(lambda: visit.error_page(404, "There is no page at this address."), signed_in=False)
    response = error_response(NotFound(f"No such resource: {request.route_path}"))
    response.headers.update(transport_headers(request))
    return response


@page("/static/{name}", signed_in=False)
def static(visit: Visit, name: str) -> Response:
    return visit.static_response(name)


@page("/", signed_in=False)
def home(visit: Visit) -> Response:
    return visit.redirect("/stores")


# Signing in and out


@page("/login", signed_in=False)
def login_form(visit: Visit) -> Response:
    next_path = local_path(visit.request.query_value("next"))
    if visit.session is not None:
        return visit.redirect(next_path)
    return visit.render("login.html", next_path=next_path, login="")


@page("/login", methods=("POST",), signed_in=False)
def login(visit: Visit) -> Response:
    form = visit.request.form
    next_path = local_path(form.get("next"))
    try:
        secret, session, device_cookie = sessions.sign_in(
            form.get("login", ""), form.get("password", ""), visit.request.source_ip, visit.device_cookie
        )
    except (Unauthorized, TooManyRequests) as error:
        return visit.form_error("login.html", error, next_path=next_path, login=form.get("login", ""))
    visit.sign_in(secret, session, device_cookie)
    return visit.redirect(next_path)


@page("/logout", methods=("POST",))
def logout(visit: Visit) -> Response:
    visit.sign_out()
    return visit.redirect("/login")


@page("/account/password")
def password_form(visit: Visit) -> Response:
    return visit.render("password.html")


@page("/account/password", methods=("POST",))
def change_password(visit: Visit) -> Response:
    form = visit.request.form
    try:
        sessions.change_password(
            visit.session,
            visit.request.source_ip,
            visit.device_cookie,
            form.get("current_password", ""),
            form.get("new_password", ""),
            form.get("confirmation", ""),
        )
    except (BadRequest, TooManyRequests) as error:
        return visit.form_error("password.html", error)
    return visit.render("password.html", changed=True)


# Stores


@page("/stores")
def store_list(visit: Visit) -> Response:
    return visit.render("stores.html", stores=stores.stores_of(visit.login), form={})


@page("/stores", methods=("POST",))
def create_store(visit: Visit) -> Response:
    form = visit.request.form
    try:
        store = stores.create_store(visit.login, form.get("name"), form.get("default_currency", ""), form.get("wallet"))
    except BadRequest as error:
        return visit.render(
            "stores.html", status=400, stores=stores.stores_of(visit.login), form=form, error=error.message
        )
    return visit.redirect(f"/stores/{store.store_id}")


def _settings_page(visit: Visit, store, form: dict, status: int = 200, **context) -> Response:
    from chalicelib.messaging import notifications

    return visit.render(
        "store_settings.html",
        status=status,
        store=store,
        form=form,
        notification_secret=notifications.signing_secret(store.store_id),
        languages=stores.CHECKOUT_LANGUAGES,
        **context,
    )


@page("/stores/{store_id}")
def store_settings(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    form, saved = stores.settings_of(store), visit.request.query_value("saved")
    try:
        addresses = stores.first_addresses(store.wallet, WALLET_PREVIEW_ADDRESSES) if store.wallet else []
    except BadRequest as error:
        # A wallet saved for another network (BITCOIN_NETWORK changed): the merchant must still reach the form.
        return _settings_page(visit, store, form, error=error.message)
    # Read one past the limit: enough to tell that the run of unused addresses is longer than it.
    unused = invoices.unpaid_in_a_row(store.store_id, int(store.gap_limit) + 1)
    gap_exceeded = unused > store.gap_limit
    return _settings_page(visit, store, form, addresses=addresses, saved=saved, gap_exceeded=gap_exceeded)


@page("/stores/{store_id}", methods=("POST",))
def save_store_settings(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    form = visit.request.form
    wallet = form.get("wallet", "").strip()
    try:
        # The addresses are shown before saving, so the merchant can compare them with their wallet's.
        addresses = stores.first_addresses(wallet, WALLET_PREVIEW_ADDRESSES) if wallet else []
        if form.get("action") == "preview":
            return _settings_page(visit, store, form, addresses=addresses, previewing=True)
        stores.update_settings(store, form)
    except BadRequest as error:
        return _settings_page(visit, store, form, status=400, error=error.message)
    return visit.redirect(f"/stores/{store.store_id}", saved="1")


@page("/stores/{store_id}/notification-secret", methods=("POST",))
def rotate_notification_secret(visit: Visit, store_id: str) -> Response:
    from chalicelib.messaging import notifications

    store = stores.owned_store(visit.login, store_id)
    notifications.rotate_signing_secret(store.store_id)
    return visit.redirect(f"/stores/{store.store_id}", saved="1")


# Access tokens


def _tokens_page(visit: Visit, store, status: int = 200, **context) -> Response:
    context.setdefault("form", {})
    store_tokens = tokens.for_store(store.store_id)
    return visit.render(
        "tokens.html", status=status, store=store, tokens=store_tokens, reference=tokens.reference, **context
    )


def _client_sin(text: str) -> str | None:
    """The SIN to bind a pairing code to, from a SIN or a client's public key (hex); None when empty."""
    text = text.strip()
    if not text:
        return None
    if is_valid_sin(text):
        return text
    try:
        return sin_from_public_key(text)
    except InvalidKey:
        raise BadRequest(
            "The client key must be a SIN (35 characters starting with T) or a public key in hex"
        ) from None


@page("/stores/{store_id}/tokens")
def token_list(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    return _tokens_page(visit, store, new_code=_new_pairing_code(store, visit.request.query_value("created")))


def _new_pairing_code(store, reference: str | None):
    """The pairing code just made (named by its reference after the redirect), while no client has claimed it."""
    if not reference:
        return None
    try:
        token = tokens.find_in_store(store.store_id, reference)
    except NotFound:
        return None
    return token if token.status == token.PENDING and token.pairing_code else None


@page("/stores/{store_id}/tokens", methods=("POST",))
def create_pairing_code(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    form = visit.request.form
    try:
        token = tokens.create_pairing_code(
            store.store_id, form.get("facade"), form.get("label") or None, _client_sin(form.get("client", ""))
        )
    except BadRequest as error:
        return _tokens_page(visit, store, status=400, form=form, error=error.message)
    # Redirected, so a reload shows the code again rather than making another.
    return visit.redirect(f"/stores/{store.store_id}/tokens", created=tokens.reference(token))


@page("/stores/{store_id}/tokens/show", methods=("POST",))
def show_token(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    try:
        token = tokens.show_value_once(store.store_id, visit.request.form.get("token", ""))
    except BadRequest as error:
        return _tokens_page(visit, store, status=400, error=error.message)
    return _tokens_page(visit, store, shown_token=token)


@page("/stores/{store_id}/tokens/revoke")
def revoke_confirmation(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    token = tokens.find_in_store(store.store_id, visit.request.query_value("token") or "")
    return visit.render("token_revoke.html", store=store, token=token, reference=tokens.reference(token))


@page("/stores/{store_id}/tokens/revoke", methods=("POST",))
def revoke(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    token = tokens.find_in_store(store.store_id, visit.request.form.get("token", ""))
    tokens.revoke(token.token, store.store_id)
    return visit.redirect(f"/stores/{store.store_id}/tokens")


@page("/stores/{store_id}/api-key", methods=("POST",))
def api_key(visit: Visit, store_id: str) -> Response:
    """Generate (replacing any old one) or revoke the store's legacy API key; a new key is shown only here."""
    store = stores.owned_store(visit.login, store_id)
    try:
        if visit.request.form.get("action") == "revoke":
            api_keys.revoke(store)
            return visit.redirect(f"/stores/{store.store_id}/tokens")
        new_key = api_keys.generate(store)
    except BadRequest as error:
        return _tokens_page(visit, store, status=400, error=error.message)
    return _tokens_page(visit, store, status=201, new_api_key=new_key)


@page("/stores/{store_id}/public-invoices", methods=("POST",))
def public_invoices(visit: Visit, store_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    stores.allow_public_invoices(store, visit.request.form.get("allowed") == "on")
    return visit.redirect(f"/stores/{store.store_id}/tokens")


# Pairing approval: the URL client libraries print after requesting a token


@page("/api-access-request")
def pairing_request(visit: Visit) -> Response:
    code = visit.request.query_value("pairingCode") or ""
    token = _pending_client_request(visit, code)
    return visit.render("pairing.html", token=token, code=code, stores=stores.stores_of(visit.login))


@page("/api-access-request", methods=("POST",))
def pairing_decision(visit: Visit) -> Response:
    form = visit.request.form
    code = form.get("pairingCode", "")
    token = _pending_client_request(visit, code)
    decision = form.get("decision")
    if decision == "deny":
        tokens.deny(code)
        return visit.render("pairing_done.html", token=token, approved=False)
    if decision != "approve":
        raise BadRequest("Choose Approve or Deny.")
    store = stores.owned_store(visit.login, form.get("store_id", ""))
    tokens.approve(code, store.store_id)
    return visit.render("pairing_done.html", token=token, approved=True, store=store)


def _pending_client_request(visit: Visit, code: str):
    try:
        return tokens.client_request(code, address=visit.request.source_ip)
    except NotFound:
        raise NotFound(
            "This pairing code is unknown. Check that the link is complete, or ask the application for a new code."
        ) from None
    except BadRequest as error:
        raise BadRequest(f"{error.message}. Ask the application to request a new pairing code.") from None


# Invoices


def _owned_invoice(store, invoice_id: str):
    try:
        invoice = invoices.get_public(invoice_id)
    except NotFound:
        invoice = None
    if invoice is None or invoice.store_id != store.store_id:
        raise NotFound("Invoice not found")
    return invoice


# The invoice list's query fields: `q` is an invoice id, an address, a buyer's email or an order id; the
# others filter through the index.
INVOICE_FILTERS = ("q", "status", "exceptionStatus", "dateStart", "dateEnd")
# Counted and exported at most (a Query each, reading every match): beyond, the merchant narrows the dates.
MOST_COUNTED = MOST_EXPORTED = 10_000


def _invoice_query(visit: Visit) -> dict[str, str]:
    return {name: value for name in INVOICE_FILTERS if (value := (visit.request.query_value(name) or "").strip())}


def _search_params(query: dict[str, str]) -> dict[str, str]:
    params = {name: value for name, value in query.items() if name != "q"}
    if "q" in query:
        # An order id with an @ is rare; a buyer's email always has one.
        params["buyerEmail" if "@" in query["q"] else "orderId"] = query["q"]
    return params


def _invoice_by_id(store, query: dict[str, str]):
    """The invoice `q` names by its id or its address: a search for it shows just that one."""
    if "q" not in query:
        return None
    return invoices.of_store(store.store_id, query["q"]) or invoices.of_store_at_address(store.store_id, query["q"])


@page("/stores/{store_id}/invoices")
def invoice_list(visit: Visit, store_id: str) -> Response:
    return _invoice_list_page(visit, stores.owned_store(visit.login, store_id))


def _invoice_list_page(visit: Visit, store, status: int = 200, **context) -> Response:
    query = _invoice_query(visit)
    offset = visit.request.query_value("offset") or "0"
    context.setdefault("new_invoice", {"currency": store.default_currency})
    context.update(store=store, query=query, statuses=INVOICE_STATUSES, exception_statuses=EXCEPTION_STATUSES)
    context["currencies"] = CURRENCIES
    try:
        by_id = _invoice_by_id(store, query)
        if by_id is not None:
            found, total = [by_id], 1
        else:
            params = _search_params(query)
            found = invoices.search(store.store_id, {**params, "limit": str(INVOICES_PER_PAGE), "offset": offset})
            total = invoices.count(store.store_id, params, MOST_COUNTED + 1)
    except BadRequest as error:
        return visit.render("invoices.html", status=400, error=error.message, invoices=[], total=0, **context)
    return visit.render(
        "invoices.html",
        status=status,
        invoices=found,
        total=total,
        most_counted=MOST_COUNTED,
        now=now_ms(),
        current_status=invoices.current_status,
        next_offset=int(offset) + INVOICES_PER_PAGE if len(found) == INVOICES_PER_PAGE else None,
        **context,
    )


# What the Invoices page's form may set: the API's own fields, read and checked by `invoices.create`.
NEW_INVOICE_FIELDS = ("price", "currency", "orderId", "itemDesc", "buyerEmail")


@page("/stores/{store_id}/invoices", methods=("POST",))
def create_invoice(visit: Visit, store_id: str) -> Response:
    """An invoice the merchant makes by hand (a sale by phone or mail): its page then shows the link to send."""
    from chalicelib.messaging import notifications  # as the API saves it, with its invoice_created notification

    store = stores.owned_store(visit.login, store_id)
    form = {name: visit.request.form.get(name, "").strip() for name in NEW_INVOICE_FIELDS}
    try:
        caller = Caller(identity=None, token=None, page_store=store.store_id)
        invoice = notifications.create_invoice(caller, form, visit.request.base_url)
    except (BadRequest, ServiceUnavailable) as error:
        return _invoice_list_page(visit, store, error.status, new_invoice=form, create_error=error.message)
    return visit.redirect(f"/stores/{store.store_id}/invoices/{invoice.invoice_id}", created="1")


@page("/stores/{store_id}/invoices/export")
def export_invoices(visit: Visit, store_id: str) -> Response:
    """The list's invoices as the page's filters select them, as CSV (newest first)."""
    store = stores.owned_store(visit.login, store_id)
    query = _invoice_query(visit)
    by_id = _invoice_by_id(store, query)
    found = [by_id] if by_id is not None else invoices.matching(store.store_id, _search_params(query), MOST_EXPORTED)
    return visit.download(invoice_export.to_csv(found, now_ms()), "text/csv; charset=utf-8", "invoices.csv")


def _invoice_page(visit: Visit, store, invoice, status: int = 200, **context) -> Response:
    from chalicelib.billing import marking  # the delivery code loads with the first invoice page, not at start-up
    from chalicelib.messaging import (
        notifications,  # the delivery code loads with the first invoice page, not at start-up
    )

    return visit.render(
        "invoice.html",
        status=status,
        store=store,
        invoice=invoices.full_view(invoice, visit.request.base_url),
        mark_reason=invoice.mark_reason,
        can_mark={status: marking.can_mark(invoice, status) for status in ("complete", "invalid")},
        notifications=notifications.history(invoice.invoice_id),
        **context,
    )


@page("/stores/{store_id}/invoices/{invoice_id}")
def invoice_detail(visit: Visit, store_id: str, invoice_id: str) -> Response:
    store = stores.owned_store(visit.login, store_id)
    invoice = _owned_invoice(store, invoice_id)
    query = visit.request.query_value
    return _invoice_page(
        visit, store, invoice, resent=query("resent"), marked=query("marked"), created=query("created")
    )


@page("/stores/{store_id}/invoices/{invoice_id}/notifications", methods=("POST",))
def resend_notification(visit: Visit, store_id: str, invoice_id: str) -> Response:
    from chalicelib.messaging import notifications

    store = stores.owned_store(visit.login, store_id)
    invoice = _owned_invoice(store, invoice_id)
    try:
        notifications.resend(invoice)
    except (BadRequest, ServiceUnavailable) as error:
        return _invoice_page(visit, store, invoice, status=error.status, error=error.message)
    return visit.redirect(f"/stores/{store.store_id}/invoices/{invoice.invoice_id}", resent="1")


@page("/stores/{store_id}/invoices/{invoice_id}/mark", methods=("POST",))
def mark_invoice(visit: Visit, store_id: str, invoice_id: str) -> Response:
    from chalicelib.billing import marking

    store = stores.owned_store(visit.login, store_id)
    invoice = _owned_invoice(store, invoice_id)
    form = visit.request.form
    try:
        marked = marking.mark(invoice, form.get("status", ""), form.get("reason"))
    except (BadRequest, ServiceUnavailable) as error:
        # Read again: a try that lost a race had already changed the object.
        invoice = _owned_invoice(store, invoice_id)
        return _invoice_page(visit, store, invoice, status=error.status, mark_error=error.message)
    return visit.redirect(f"/stores/{store.store_id}/invoices/{invoice.invoice_id}", marked=marked.status)


# The buyer's checkout


def _checkout(visit: Visit, invoice_id: str) -> Response:
    view, store = checkout.find(invoice_id, visit.request.base_url)
    chosen = language.choose(visit.request.headers.get("accept-language"), store.default_language if store else None)
    return visit.render(
        "checkout.html",
        policy=CHECKOUT_CONTENT_SECURITY_POLICY,
        invoice=view,
        store_name=store.name if store else "",
        status_region=checkout.status_region(view, store, chosen),
        refresh_seconds=checkout.poll_seconds(view),
        # The page's polls ask for the region in the language the page chose (English: no parameter).
        status_query={"id": view["id"], **({"lang": chosen} if chosen != language.DEFAULT_LANGUAGE else {})},
        **language.template_context(chosen),
    )


@page("/invoice", signed_in=False)
def checkout_page(visit: Visit) -> Response:
    return _checkout(visit, visit.request.query_value("id") or "")


@page("/i/{invoice_id}", signed_in=False)
def checkout_short_url(visit: Visit, invoice_id: str) -> Response:
    return _checkout(visit, invoice_id)

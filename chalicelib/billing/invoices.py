"""Invoices: creating them from what BitPay clients send, finding them, and their wire views."""

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from functools import lru_cache
from types import SimpleNamespace
from urllib.parse import quote

import base58
from pynamodb.constants import NULL, NUMBER, STRING
from pynamodb.exceptions import PutError
from pynamodb.expressions.operand import Path

from chalicelib.api import shapes
from chalicelib.billing.stores import TARGET_CONFIRMATIONS, invoicing_store, reserve_address_index
from chalicelib.errors import BadRequest, NotFound
from chalicelib.fields import http_url
from chalicelib.models import (
    BuyerAttribute,
    ClaimModel,
    InvoiceModel,
    condition_failed,
    now_ms,
    query_read_only,
    watch_partition,
)
from chalicelib.payments.rates import get_rates
from chalicelib.security.auth import Caller
from chalicelib.settings import get_settings

SATS_PER_BTC = 100_000_000
MAX_PRICE = Decimal("1e12")
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
# An offset is read and thrown away item by item; past this, a page's `next` cursor goes deeper.
MAX_OFFSET = 10_000
_DAY_MS = 24 * 3600 * 1000
# Shape field -> model attribute, for the fields stored as they are read.
_STORED_AS = {
    "orderId": "order_id",
    "itemDesc": "item_desc",
    "itemCode": "item_code",
    "guid": "guid",
    "posData": "pos_data",
    "notificationEmail": "notification_email",
    "fullNotifications": "full_notifications",
    "extendedNotifications": "extended_notifications",
    "physical": "physical",
    "buyer": "buyer",
}
_URL_FIELDS = {"notificationURL": "notification_url", "redirectURL": "redirect_url", "closeURL": "close_url"}
_TRAPS = [InvalidOperation, DivisionByZero, Overflow]
# Filled in redirectURL and notificationURL, as BTCPay does.
_PLACEHOLDER = re.compile(r"\{(?:orderid|invoiceid)\}", re.IGNORECASE)
_PLACEHOLDER_FIELDS = {"redirect_url": "redirectURL", "notification_url": "notificationURL"}
_PRIVATE_FIELDS = ("posData", "buyer", "notificationURL", "notificationEmail", "token", "guid", "orderId", "itemCode")


# Digits with an optional fraction and a short exponent (how JSON writes a float such as 1e-05):
# "1_000", "0x10", "1e-1000030" or "9" * 5000 never reach Decimal, let alone arithmetic.
_NUMBER = re.compile(r"-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,2})?")


def _amount(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{name} must be a number")
    text_value = str(value).strip()
    if not _NUMBER.fullmatch(text_value):
        raise BadRequest(f"{name} must be a number (digits with at most 20 decimals, e.g. 10.50)")
    amount = Decimal(text_value)
    if amount > MAX_PRICE:
        raise BadRequest(f"{name} is too large")
    return amount


def _price(value: object) -> Decimal:
    # Never None: shapes.read refuses an absent or empty price (BitPay's "top-up" invoice) first.
    price = _amount(value, "price")
    if price <= 0:
        raise BadRequest("price must be greater than 0")
    return price


def _tax_included(value: object, price: Decimal) -> Decimal:
    if value is None:  # absent or empty (shapes.read)
        return Decimal(0)
    tax = _amount(value, "taxIncluded")
    if not 0 <= tax <= price:
        raise BadRequest("taxIncluded must be from 0 to the price")
    return tax


def _transaction_speed(speed: object) -> str | None:
    """One of BitPay's speeds; anything else (plugins send "default") leaves the store's own speed."""
    return speed.strip().lower() if isinstance(speed, str) and speed.strip().lower() in TARGET_CONFIRMATIONS else None


def amount_due_sats(price: Decimal, rate: Decimal) -> int:
    """The price in satoshis, rounded up: the merchant is never paid less than the price.

    A local context, so no setting elsewhere changes the result: precision far above what a
    bounded price and rate need, every rounding towards the ceiling (so a positive price never
    comes out as 0), and an exponent range that stops any runaway value with an exception.
    """
    # pragma: the mutants of this line that change the result (no ceiling, the default 28 digits, no upper
    # exponent limit) fail tests/test_mutation_kills_invoices.py and the rounding tests; its others are
    # equivalent: a digit more of precision or exponent, no lower limit (rounding up never makes a
    # positive amount 0), and traps that are the default ones.
    with localcontext(Context(prec=60, rounding=ROUND_CEILING, Emax=60, Emin=-60, traps=_TRAPS)):  # pragma: no mutate
        return int((price * SATS_PER_BTC / rate).to_integral_value())


def _check_dust(due_sats: int, wallet, rate: Decimal, currency: str) -> None:
    """Refuse an amount the network would not relay to the store's kind of address."""
    minimum = wallet.dust_limit
    if due_sats >= minimum:
        return
    # A local context, so no setting elsewhere changes the figure. Its mutants are equivalent: at the
    # default 28 digits too, a few hundred satoshis times a rate is exact, and the default traps are these.
    with localcontext(Context(prec=60, traps=_TRAPS)):  # pragma: no mutate
        least_price = (Decimal(minimum) * rate / SATS_PER_BTC).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    raise BadRequest(
        f"price is too small: the amount due must be at least {minimum} sats ({format_btc(minimum)} BTC), "
        f"the smallest payment Bitcoin relays to this store's addresses; at the current rate that is "
        f"{least_price} {currency}"
    )


def parse_request(body: dict) -> dict:
    """The invoice fields of a BitPay create-invoice body, validated; unknown fields are ignored."""
    fields = shapes.read(shapes.INVOICE_FIELDS, body)
    price = _price(fields["price"])
    currency = fields["currency"].strip().upper()
    if not currency:
        raise BadRequest("currency is required (ISO 4217 code, e.g. USD)")
    if not get_rates().is_known(currency):
        raise BadRequest(f"currency {currency} is not supported")
    parsed = {attribute: fields[name] for name, attribute in _STORED_AS.items()}
    for name, attribute in _URL_FIELDS.items():
        value = fields[name]
        if attribute in _PLACEHOLDER_FIELDS and isinstance(value, str):
            # Checked as it will be once `create` fills its placeholders.
            parsed[attribute] = value if http_url(fill_placeholders(value, "0", "0"), name) else None
        else:
            parsed[attribute] = http_url(value, name)
    return {
        **parsed,
        "price": price,
        "tax_included": _tax_included(fields["taxIncluded"], price),
        "currency": currency,
        "transaction_speed": _transaction_speed(fields["transactionSpeed"]),
        "buyer": parsed["buyer"] or {},
    }


def fill_placeholders(template: str, invoice_id: str, order_id: str | None) -> str:
    """BTCPay's `{OrderId}` and `{InvoiceId}` in a URL, replaced (any case) by the values, URL-encoded."""
    values = {"{orderid}": quote(order_id or "", safe=""), "{invoiceid}": quote(invoice_id, safe="")}
    return _PLACEHOLDER.sub(lambda match: values[match.group(0).lower()], template)


def _new_invoice_id(store_id: str, guid: str | None) -> str:
    """A random id, or with a guid one derived from it, so a retried create finds the first invoice."""
    raw = hashlib.sha256(f"{store_id}\0{guid}".encode()).digest()[:16] if guid else secrets.token_bytes(16)
    return base58.b58encode(raw).decode()


@lru_cache(maxsize=256)
def _wallet(text: str):
    from chalicelib.payments.wallet import Wallet  # embit loads on the first invoice, not at start-up

    return Wallet.parse(text, get_settings().bitcoin_network)


def _save_new(invoice: InvoiceModel) -> None:
    invoice.save(condition=InvoiceModel.invoice_id.does_not_exist())


def create(
    caller: Caller,
    body: dict,
    base_url: str | None = None,
    save: Callable[[InvoiceModel], None] = _save_new,
    conflicts: tuple[type[Exception], ...] = (PutError,),
) -> InvoiceModel:
    """A new invoice for the caller's store, at a fresh receive address, watched from now on.

    `base_url` is where the API was reached: notifications, sent later without a
    request to take it from, link to the invoice there. `save` writes it (the API's
    also writes its invoice_created notification in the same transaction), raising
    one of `conflicts` when its id is taken.

    Everything a request can fail on (its fields, a retried guid, the store's wallet,
    the rate, the dust limit) is checked before the address index is reserved, so
    retries and refused requests leave no unused address behind. Then the address is
    claimed on its own key before the invoice is written: no address ever serves two
    invoices, even when two stores' wallets overlap. DynamoDB requests, with the token
    lookup: 5 (6 with a guid).
    """
    fields = parse_request(body)
    if caller.facade == "public" and (fields["notification_url"] or fields["notification_email"]):
        # Anyone could otherwise have the store tell a shop "paid" for an invoice they made for one of its
        # orders, or have it send mail to any address.
        raise BadRequest("An invoice created without credentials cannot set notificationURL or notificationEmail")
    invoice_id = _new_invoice_id(caller.store_id, fields["guid"])
    for attribute, name in _PLACEHOLDER_FIELDS.items():
        if fields[attribute]:
            fields[attribute] = http_url(fill_placeholders(fields[attribute], invoice_id, fields["order_id"]), name)
    if fields["guid"]:
        existing = _get(invoice_id)
        if existing is not None:
            return _retried(caller, existing)
    store = invoicing_store(caller.store_id)
    wallet = _wallet(store.wallet)
    rate = get_rates().btc_price(fields["currency"])
    due_sats = amount_due_sats(fields["price"], rate)
    _check_dust(due_sats, wallet, rate, fields["currency"])
    address_index = reserve_address_index(store)
    created = now_ms()
    speed = fields.pop("transaction_speed") or store.transaction_speed
    status = "new"
    invoice = InvoiceModel(
        invoice_id,
        store_id=store.store_id,
        token=caller.token_reference,
        facade=caller.facade,
        created=created,
        expiration=created + int(store.invoice_expiration_minutes) * 60_000,
        status=status,
        rate=str(rate),
        btc_due_sats=due_sats,
        address=wallet.address(address_index),
        address_index=address_index,
        transaction_speed=speed,
        invoice_token=base58.b58encode(secrets.token_bytes(16)).decode(),
        store_status=f"{store.store_id}#{status}",
        store_order_id=f"{store.store_id}#{fields['order_id']}" if fields["order_id"] else None,
        store_item_code=f"{store.store_id}#{fields['item_code']}" if fields["item_code"] else None,
        store_buyer_email=_buyer_email_key(store.store_id, fields["buyer"].get("email")),
        base_url=base_url,
        contact_email=store.contact_email,
        watch_network=watch_partition(get_settings().bitcoin_network, invoice_id),
        next_check=created,
        **{
            **fields,
            "price": str(fields["price"]),
            "tax_included": str(fields["tax_included"]),
            "buyer": BuyerAttribute(**fields["buyer"]),
        },
    )
    # The address is claimed first, on its own key: if anything fails after, the address stays unused
    # for good (a gap of one), never handed to a second invoice. Two plain writes rather than a
    # transaction: half the write cost, and nothing here needs both-or-neither.
    claim = ClaimModel(f"address#{invoice.address}", store_id=store.store_id, invoice_id=invoice.invoice_id)
    try:
        claim.save(condition=ClaimModel.key.does_not_exist())
    except PutError as exc:
        if condition_failed(exc):
            raise BadRequest(
                f"The store's receive address {invoice.address} already belongs to another invoice: its wallet is "
                "also used elsewhere. Give the store a wallet of its own (another account's extended public key)."
            ) from exc
        raise
    try:
        save(invoice)
    except conflicts as exc:
        if fields["guid"] and condition_failed(exc):
            # The same guid created at the same moment by another request: that one won. (pragma: moto's reads
            # are always consistent, so dropping `consistent_read` cannot fail a test offline.)
            winner = InvoiceModel.get(invoice_id, consistent_read=True)  # pragma: no mutate
            return _retried(caller, winner)
        raise
    return invoice


def _buyer_email_key(store_id: str, email: str | None) -> str | None:
    # Lower case: people type an address in any case and mean the same mailbox.
    return f"{store_id}#{email.strip().lower()}" if email else None


def _retried(caller: Caller, existing: InvoiceModel) -> InvoiceModel:
    """The invoice a retried create (same guid) made first, if this caller may have it."""
    if caller.facade == "pos" and existing.token != caller.token.token:
        raise BadRequest("guid is already used by another client of this store")
    return existing


def unpaid_in_a_row(store_id: str, limit: int) -> int:
    """How many of the store's newest invoices in a row were never paid, counting at most `limit`.

    Each invoice has an address of its own, so this is the run of unused addresses a
    wallet must look across. One Query of at most `limit` keys on the by-store index, and the
    invoices read by key: a settings page reads them, rather than every payment writing the index.
    """
    run = 0
    newest = query_read_only(
        InvoiceModel,
        limit,
        hash_key=store_id,
        index_name=InvoiceModel.by_store.Meta.index_name,
        scan_index_forward=False,
    )
    for invoice in newest:
        if invoice.btc_paid_sats > 0:
            break
        run += 1
    return run


def _get(invoice_id: str) -> InvoiceModel | None:
    if not 0 < len(invoice_id) <= 64:
        return None
    try:
        # Strongly consistent: clients read an invoice back the moment they have created it.
        return InvoiceModel.get(invoice_id, consistent_read=True)
    except InvoiceModel.DoesNotExist:
        return None


def get_public(invoice_id: str) -> InvoiceModel:
    invoice = _get(invoice_id)
    if invoice is None:
        raise NotFound("Object not found")
    return invoice


def get_for(caller: Caller, invoice_id: str) -> InvoiceModel:
    """The invoice if the caller may read it: its store's merchant, or the pos token that made it."""
    invoice = _get(invoice_id)
    if invoice is None or invoice.store_id != caller.store_id:
        raise NotFound("Object not found")
    if caller.facade == "pos" and invoice.token != caller.token.token:
        raise NotFound("Object not found")
    return invoice


def get_by_invoice_token(invoice_id: str, invoice_token: str | None) -> InvoiceModel | None:
    """The invoice when `invoice_token` is its own resource token (BitPay's `token` in the invoice object)."""
    invoice = _get(invoice_id) if invoice_token else None
    if invoice is None or not secrets.compare_digest(invoice.invoice_token.encode(), invoice_token.encode()):
        return None
    return invoice


def get_by_guid(caller: Caller, guid: str) -> InvoiceModel:
    return get_for(caller, _new_invoice_id(caller.store_id, guid))


def _parse_date(value: str, name: str, end: bool) -> int:
    for pattern in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            day = datetime.strptime(value.strip(), pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
        # dateEnd names a whole day: everything before the next midnight (in ms, so 9999-12-31 works too).
        return int(day.timestamp() * 1000) + (_DAY_MS - 1 if end else 0)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be a date: YYYY-MM-DD or MM/DD/YYYY") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _whole_number(value: str | None, name: str, default: int, maximum: int) -> int:
    if value is None or value == "":
        return default
    # isdigit alone lets through "²", which int() refuses.
    if not (value.isascii() and value.isdigit()) or int(value) > maximum:
        raise BadRequest(f"{name} must be a whole number from 0 to {maximum}")
    return int(value)


def _page_size(params: dict[str, str]) -> int:
    return _whole_number(params.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT


def next_cursor(found: list[InvoiceModel], params: dict[str, str]) -> str | None:
    """The `next` value that continues a full page where it stopped (None after a short page)."""
    if not found or len(found) < _page_size(params):
        return None
    last = found[-1]
    return base64.urlsafe_b64encode(json.dumps([last.created, last.invoice_id]).encode()).decode().rstrip("=")


def _start_key(cursor: str, index, key: str) -> dict:
    """DynamoDB's ExclusiveStartKey for `index` and this query's own `key`: only the position is the client's."""
    try:
        created, invoice_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (type(created) is int and isinstance(invoice_id, str)):
            raise ValueError
    except ValueError:
        raise BadRequest("next must be the next value of a previous page") from None
    return {
        InvoiceModel._hash_key_attribute().attr_name: {STRING: invoice_id},
        index._hash_key_attribute().attr_name: {STRING: key},
        InvoiceModel.created.attr_name: {NUMBER: str(created)},
    }


# exceptionStatus values a search can ask for; "none" is an invoice without one.
EXCEPTION_STATUSES = ("paidPartial", "paidOver", "paidLate", "none")


def _query(store_id: str, params: dict[str, str]) -> dict:
    """The Query that finds the store's invoices matching `params`, through the most selective index."""
    start = _parse_date(params["dateStart"], "dateStart", end=False) if params.get("dateStart") else 0
    end = _parse_date(params["dateEnd"], "dateEnd", end=True) if params.get("dateEnd") else 2**53
    if start > end:
        # DynamoDB refuses a BETWEEN whose bounds are reversed.
        raise BadRequest("dateEnd must not be before dateStart")
    status, order_id, item_code = params.get("status"), params.get("orderId"), params.get("itemCode")
    buyer_email = params.get("buyerEmail")
    exception_status = params.get("exceptionStatus")
    if exception_status and exception_status not in EXCEPTION_STATUSES:
        raise BadRequest(f"exceptionStatus must be one of {', '.join(EXCEPTION_STATUSES)}")
    if order_id:
        index, key = InvoiceModel.by_order_id, f"{store_id}#{order_id}"
    elif item_code:
        index, key = InvoiceModel.by_item_code, f"{store_id}#{item_code}"
    elif buyer_email:
        index, key = InvoiceModel.by_buyer_email, _buyer_email_key(store_id, buyer_email)
    elif status:
        index, key = InvoiceModel.by_status, f"{store_id}#{status}"
    else:
        index, key = InvoiceModel.by_store, store_id
    # What the index's key has not already chosen, by attribute; None: the invoice has none.
    wanted = {}
    if status and index is not InvoiceModel.by_status:
        wanted["status"] = status
    if item_code and index is InvoiceModel.by_order_id:
        wanted["item_code"] = item_code
    if exception_status:
        wanted["exception_status"] = None if exception_status == "none" else exception_status
    # The index filters on what it carries. The orderId, itemCode and buyer email indexes do not
    # carry what changes over an invoice's life (its status changes would rewrite them): that is
    # filtered on the invoices read by key.
    on_index = {name: value for name, value in wanted.items() if _projects(index, name)}
    on_items = {name: value for name, value in wanted.items() if name not in on_index}
    filter_condition = None
    for condition in map(_condition, on_index.items()):
        filter_condition = condition if filter_condition is None else filter_condition & condition
    return {
        "index": index,
        "key": key,
        "range_key_condition": InvoiceModel.created.between(start, end),
        "filter_condition": filter_condition,
        "keep": _keeper(on_items) if on_items else None,
    }


def _projects(index, name: str) -> bool:
    projection = index.Meta.projection
    attr_name = InvoiceModel.get_attributes()[name].attr_name
    return projection.projection_type == "ALL" or attr_name in (projection.non_key_attributes or ())


def _condition(wanted: tuple[str, str | None]) -> object:
    name, value = wanted
    attribute = InvoiceModel.get_attributes()[name]
    if value is None:
        # An exception status once set and then cleared is stored as NULL: none either.
        return attribute.does_not_exist() | Path(attribute).is_type(NULL)
    return attribute == value


# Invoices a search reads by key at most to filter them on what its index does not carry
# (about 5,000 read units and a few seconds); past that the dates must narrow it.
MOST_FILTERED = 10_000


def _keeper(wanted: dict[str, str | None]) -> Callable[[SimpleNamespace], bool]:
    """Whether an invoice read by key has the `wanted` values: the item's own, never an index's
    eventually consistent copy of them."""
    read = 0

    def keep(invoice: SimpleNamespace) -> bool:
        nonlocal read
        read += 1
        if read > MOST_FILTERED:
            raise BadRequest(
                f"more than {MOST_FILTERED:,} invoices to filter by status or exceptionStatus: "
                "narrow the search with dateStart and dateEnd"
            )
        return all(getattr(invoice, name) == value for name, value in wanted.items())

    return keep


def _read_only(
    query: dict, most: int, exclusive_start_key: dict | None = None, skip: int = 0
) -> Iterator[SimpleNamespace]:
    # Read-only records, not models: pynamodb's decoding of a page costs more than the rest of the route.
    return query_read_only(
        InvoiceModel,
        most,
        skip,
        query["keep"],
        hash_key=query["key"],
        index_name=query["index"].Meta.index_name,
        range_key_condition=query["range_key_condition"],
        filter_condition=query["filter_condition"],
        scan_index_forward=False,
        exclusive_start_key=exclusive_start_key,
    )


def search(store_id: str, params: dict[str, str]) -> list[SimpleNamespace]:
    """The store's invoices, newest first, filtered through the most selective index (for views only).

    With an orderId, itemCode or buyer email, status and exceptionStatus are those of the invoices
    read by key (a side benefit: their current values, not an index's lagging copy), read a page of
    the index after another until the page is full.
    """
    query = _query(store_id, params)
    limit = _page_size(params)
    offset = _whole_number(params.get("offset"), "offset", 0, MAX_OFFSET)
    start = _start_key(params["next"], query["index"], query["key"]) if params.get("next") else None
    # Skipped as they stream past on the index: a deep offset costs index reads, not memory nor item
    # reads (but when the invoices read by key are filtered: the skipped ones are read too).
    return list(_read_only(query, offset + limit, start, skip=offset))


def matching(store_id: str, params: dict[str, str], most: int) -> list[SimpleNamespace]:
    """Up to `most` of the invoices `search` pages through, newest first (an export)."""
    return list(_read_only(_query(store_id, params), most))


def count(store_id: str, params: dict[str, str], most: int) -> int:
    """How many invoices match, counting at most `most` (a Query that returns no items, or when the
    index does not carry what is filtered on, the invoices read by key; never a Scan)."""
    query = _query(store_id, params)
    if query["keep"]:
        return sum(1 for _ in _read_only(query, most))
    return query["index"].count(
        query["key"], range_key_condition=query["range_key_condition"], filter_condition=query["filter_condition"],
        limit=most,
    )  # fmt: skip


def of_store(store_id: str, invoice_id: str) -> InvoiceModel | None:
    """The store's invoice with this id; None when there is none, or it is another store's."""
    invoice = _get(invoice_id)
    return invoice if invoice is not None and invoice.store_id == store_id else None


def of_store_at_address(store_id: str, address: str) -> InvoiceModel | None:
    """The store's invoice whose receive address this is, through the address's claim (a GetItem, no index)."""
    if not 0 < len(address) <= 100:
        return None
    try:
        claim = ClaimModel.get(f"address#{address}")
    except ClaimModel.DoesNotExist:
        return None
    return of_store(store_id, claim.invoice_id) if claim.invoice_id else None


def format_btc(sats: int) -> str:
    """Satoshis as the 8-decimal BTC amount BitPay writes: 15385 -> "0.00015385"."""
    return f"{Decimal(sats) / SATS_PER_BTC:.8f}"


def _btc_float(sats: int) -> float:
    """BitPay's underpaidAmount and overpaidAmount: BTC, as a JSON number."""
    return float(Decimal(sats) / SATS_PER_BTC)


def _bip21(invoice: InvoiceModel, due_sats: int) -> str:
    # Fixed-point: normalize() alone would write 10 BTC as 1E+1.
    return f"bitcoin:{invoice.address}?amount={(Decimal(due_sats) / SATS_PER_BTC).normalize():f}"


def current_status(invoice: InvoiceModel, now: int) -> str:
    """An unpaid invoice past its expiration time is expired, even before the watcher records it."""
    return "expired" if invoice.status == "new" and now > invoice.expiration else invoice.status


def _transactions(invoice: InvoiceModel) -> list[dict]:
    return [
        {
            "amount": payment.amount,
            "confirmations": payment.confirmations,
            "receivedTime": payment.first_seen,
            "time": payment.block_time or payment.first_seen,
            "txid": payment.txid,
        }
        for payment in invoice.payments
    ]


def full_view(invoice: InvoiceModel, base_url: str) -> dict:
    """The invoice object of BitPay's API, typed as bitpay 8's models expect (no nulls)."""
    now = now_ms()
    due_sats = max(invoice.btc_due_sats - invoice.btc_paid_sats, 0)
    # Once paid, the payment link keeps the invoice's amount rather than asking for zero.
    bip21 = _bip21(invoice, due_sats or invoice.btc_due_sats)
    rate = float(Decimal(invoice.rate))
    exception_status = invoice.exception_status or False
    view = {
        "id": invoice.invoice_id,
        "url": f"{base_url}/invoice?id={invoice.invoice_id}",
        "status": current_status(invoice, now),
        "price": float(Decimal(invoice.price)),
        "taxIncluded": float(Decimal(invoice.tax_included)),
        "currency": invoice.currency,
        "orderId": invoice.order_id,
        "itemDesc": invoice.item_desc,
        "itemCode": invoice.item_code,
        "posData": invoice.pos_data,
        "invoiceTime": invoice.created,
        "expirationTime": invoice.expiration,
        "currentTime": now,
        "exceptionStatus": exception_status,
        "token": invoice.invoice_token,
        "guid": invoice.guid,
        "transactionSpeed": invoice.transaction_speed,
        "targetConfirmations": TARGET_CONFIRMATIONS[invoice.transaction_speed],
        "redirectURL": invoice.redirect_url,
        "closeURL": invoice.close_url,
        "notificationURL": invoice.notification_url,
        "notificationEmail": invoice.notification_email,
        "fullNotifications": invoice.full_notifications,
        "extendedNotifications": invoice.extended_notifications,
        "physical": invoice.physical,
        "buyer": {name: value for name, value in invoice.buyer.attribute_values.items() if value is not None},
        "paymentSubtotals": {"BTC": invoice.btc_due_sats},
        "paymentTotals": {"BTC": invoice.btc_due_sats},
        "paymentDisplayTotals": {"BTC": format_btc(invoice.btc_due_sats)},
        "paymentDisplaySubTotals": {"BTC": format_btc(invoice.btc_due_sats)},
        "exchangeRates": {"BTC": {invoice.currency: rate}},
        "amountPaid": invoice.btc_paid_sats,
        "displayAmountPaid": format_btc(invoice.btc_paid_sats),
        "transactions": _transactions(invoice),
        "supportedTransactionCurrencies": {"BTC": {"enabled": True}},
        "paymentCodes": {"BTC": {"BIP21": bip21}},
        "underpaidAmount": _btc_float(invoice.btc_due_sats - invoice.btc_paid_sats)
        if exception_status == "paidPartial"
        else None,
        "overpaidAmount": _btc_float(invoice.btc_paid_sats - invoice.btc_due_sats)
        if exception_status == "paidOver"
        else None,
        "isCancelled": invoice.cancelled,
        "refundAddressRequestPending": False,
        "lowFeeDetected": False,
        # Names that BTCPay-era clients still read.
        "btcPrice": format_btc(invoice.btc_due_sats),
        "btcDue": format_btc(due_sats),
        "btcPaid": format_btc(invoice.btc_paid_sats),
        "rate": rate,
        "bitcoinAddress": invoice.address,
        "paymentUrls": {"BIP21": bip21},
        "addresses": {"BTC": invoice.address},
    }
    return {key: value for key, value in view.items() if value is not None}


def public_view(invoice: InvoiceModel, base_url: str) -> dict:
    """What anyone holding the invoice id may see: no merchant or buyer data."""
    view = full_view(invoice, base_url)
    for key in _PRIVATE_FIELDS:
        view.pop(key, None)
    return view

"""What each API operation accepts, declared once: its route, parameters and body fields.

The same declarations check request bodies (`read`) and make the OpenAPI document
(`chalicelib.api.openapi`), so the document cannot promise a field the service reads
differently. BitPay clients disagree on names: a body field is found under its name or
any alias, in any letter case (BTCPay sends `City`, old plugins `buyerCity`).
"""

import json
from dataclasses import dataclass

from chalicelib.billing.stores import TARGET_CONFIRMATIONS, TRANSACTION_SPEEDS
from chalicelib.errors import BadRequest
from chalicelib.fields import text
from chalicelib.security.tokens import PAIRABLE_FACADES
from chalicelib.web import MAX_BODY_BYTES

# Who may call an operation: anyone; a signed client (x-identity, x-signature); a token of `facades`;
# anyone, with more shown to a token; anyone pairing, or a signed merchant asking for a token.
PUBLIC, SIGNED, TOKEN, TOKEN_OPTIONAL, PAIRING = "public", "signed", "token", "token-optional", "pairing"
INVOICE_STATUSES = ("new", "paid", "confirmed", "complete", "expired", "invalid")


@dataclass(frozen=True)
class Field:
    """One parameter or body field.

    `type` is a JSON Schema type, or `url` / `email`. `read` checks strings, emails, booleans
    and objects; a field `parsed_by_owner` (numbers, URLs...) is handed over as sent, for the
    module that owns it to parse.
    """

    name: str
    type: str
    description: str
    required: bool = False
    hint: str = ""  # follows "NAME is required" in the error for a missing required field
    parsed_by_owner: bool = False
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    default: object = None
    # An object or list sent for this string field is kept as its JSON text (posData).
    json_text: bool = False
    multiline: bool = False  # free text where tabs and line breaks are allowed
    fields: tuple["Field", ...] = ()  # an object's own fields
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    examples: tuple = ()  # for the document

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key.lower() for key in (self.name, *self.aliases))

    def find(self, sources: list[dict]) -> object:
        """The first value given under one of its keys, None when absent or empty."""
        for source in sources:
            for key in self.keys:
                if source.get(key) not in (None, ""):
                    return source[key]
        return None

    def check(self, value: object, label: str) -> object:
        """`value` as this field takes it, or a BadRequest naming `label`."""
        if self.parsed_by_owner:
            return value
        if self.type == "boolean":
            return _boolean(value, label)
        if self.type == "object":
            if not isinstance(value, dict):
                raise BadRequest(f"{label} must be an object")
            return {}
        return self._text(value, label)

    def _text(self, value: object, label: str) -> str:
        if self.json_text and not isinstance(value, str):
            value = json.dumps(value)
        value = text(value, label, self.max_length or MAX_BODY_BYTES, multiline=self.multiline)
        if self.enum and value not in self.enum:
            raise BadRequest(f"{label} must be {', '.join(self.enum[:-1])} or {self.enum[-1]}")
        if self.type == "email" and "@" not in value:
            raise BadRequest(f"{label} is not an email address")
        return value


def _boolean(value: object, label: str) -> bool:
    if isinstance(value, bool):
        return value
    # "1" and "0" are how PHP's http_build_query writes true and false in a form body.
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise BadRequest(f"{label} must be true or false")


def read(fields: tuple[Field, ...], body: dict) -> dict:
    """The declared fields of a JSON body by name, checked; unknown fields are ignored.

    An absent or empty field reads as its default. An object's fields are looked for in it
    first, then at the top level (BitPay's flat legacy names, such as `buyerEmail`), and only
    those given are kept.
    """
    top = {key.lower(): value for key, value in body.items() if isinstance(key, str)}
    values = {}
    for spec in fields:
        value = spec.find([top])
        if value is None and spec.fields and any(sub.find([top]) is not None for sub in spec.fields):
            value = {}
        if value is None:
            if spec.required:
                raise BadRequest(f"{spec.name} is required{spec.hint}")
            values[spec.name] = spec.default
            continue
        values[spec.name] = spec.check(value, spec.name)
        if spec.fields:
            nested = {key.lower(): item for key, item in value.items() if isinstance(key, str)}
            for sub in spec.fields:
                item = sub.find([nested, top])
                if item is not None:
                    values[spec.name][sub.name] = sub.check(item, f"{spec.name} {sub.name}")
    return values


@dataclass(frozen=True)
class Operation:
    """One API route: what it accepts, who may call it and what it answers (a schema in `openapi`)."""

    method: str
    path: str
    operation_id: str
    summary: str
    access: str
    response: str
    facades: tuple[str, ...] = ()
    query: tuple[Field, ...] = ()
    body: tuple[Field, ...] = ()
    path_fields: tuple[Field, ...] = ()  # what is known of the path's parameters beyond being text

    @property
    def path_parameters(self) -> list[Field]:
        declared = {field.name: field for field in self.path_fields}
        names = [part[1:-1] for part in self.path.split("/") if part.startswith("{")]
        return [declared.get(name, Field(name, "string", "")) for name in names]


_TOKEN_FIELD = Field(
    "token", "string", "The API token, for POST requests in the body (in the query for the others)", max_length=128
)

BUYER = Field(
    "buyer",
    "object",
    "The buyer; each field is also read at the top level under its flat name (buyerName...)",
    fields=(
        Field("name", "string", "", max_length=200, aliases=("buyerName",)),
        Field("address1", "string", "", max_length=200, aliases=("buyerAddress1",)),
        Field("address2", "string", "", max_length=200, aliases=("buyerAddress2",)),
        Field("locality", "string", "City", max_length=200, aliases=("city", "buyerCity")),
        Field("region", "string", "State or region", max_length=200, aliases=("state", "buyerState")),
        Field("postalCode", "string", "", max_length=200, aliases=("zip", "buyerZip")),
        Field("country", "string", "", max_length=200, aliases=("buyerCountry",)),
        Field("email", "email", "", max_length=200, aliases=("buyerEmail",)),
        Field("phone", "string", "", max_length=200, aliases=("buyerPhone",)),
        Field("notify", "boolean", "Whether BitPay would email the buyer", aliases=("buyerNotify",)),
    ),
)

INVOICE_FIELDS = (
    Field(
        "price",
        "number",
        "Amount in `currency`, a number or its decimal text",
        required=True,
        # BitPay makes a "top-up" invoice (the buyer chooses the amount) without a price; paylambda does not.
        hint=": paylambda makes invoices for a fixed price only (no top-up invoices)",
        parsed_by_owner=True,
        examples=(10.5,),
    ),
    Field("currency", "string", "ISO 4217 code", required=True, hint=" (ISO 4217 code, e.g. USD)", examples=("USD",)),
    Field("taxIncluded", "number", "The part of the price that is tax, from 0 to the price", parsed_by_owner=True),
    Field("orderId", "string", "The shop's order reference (searchable)", max_length=100),
    Field("itemDesc", "string", "", max_length=1000, multiline=True),
    Field("itemCode", "string", "The shop's item reference (searchable)", max_length=100),
    Field(
        "posData",
        "string",
        "Passed back as given; an object is kept as its JSON text",
        max_length=10_000,
        json_text=True,
        multiline=True,
    ),
    Field("guid", "string", "Idempotency key: a create repeated with it returns the first invoice", max_length=100),
    Field(
        "notificationURL", "url", "Where IPNs are posted; {OrderId} and {InvoiceId} are filled", parsed_by_owner=True
    ),
    Field("notificationEmail", "email", "", max_length=254),
    Field(
        "redirectURL",
        "url",
        "Where the checkout sends the buyer once paid; placeholders as above",
        parsed_by_owner=True,
    ),
    Field("closeURL", "url", "Where the checkout's close link goes", parsed_by_owner=True),
    Field(
        "transactionSpeed",
        "string",
        "Confirmations before `confirmed`: "
        + ", ".join(f"{speed} {count}" for speed, count in TARGET_CONFIRMATIONS.items())
        + "; anything else: the store's speed",
        examples=TRANSACTION_SPEEDS,
        parsed_by_owner=True,
    ),
    Field("fullNotifications", "boolean", "An IPN on every status change", default=False),
    Field("extendedNotifications", "boolean", "IPNs in the {event, data} form", default=False),
    Field("physical", "boolean", "", default=False),
    BUYER,
    _TOKEN_FIELD,
    Field(
        "storeId",
        "string",
        "Without any credential: a store that lets anyone create invoices (also in the query)",
        parsed_by_owner=True,
    ),
)

TOKEN_FIELDS = (
    Field(
        "id",
        "string",
        "The client's SIN: pairs it (pending until approved), or with pairingCode claims a merchant-made code",
        pattern="^T[1-9A-HJ-NP-Za-km-z]{34}$",
    ),
    Field("pairingCode", "string", "A pairing code made by the merchant, to claim"),
    Field("facade", "string", "pos or merchant", enum=PAIRABLE_FACADES),
    Field("label", "string", "A name for the token, shown to the merchant", max_length=100),
    Field("token", "string", "A merchant token, to ask for another token for its store", max_length=128),
)

_BASE = Field("base", "string", "The base currency", examples=("BTC",))
_DATE = "YYYY-MM-DD, MM/DD/YYYY or ISO 8601"

OPERATIONS = (
    Operation(
        "POST", "/tokens", "createToken", "Pair a client, or claim a pairing code", PAIRING, "TokenPairing",
        body=TOKEN_FIELDS,
    ),
    Operation("GET", "/tokens", "listTokens", "The signing client's active tokens", SIGNED, "TokenList"),
    Operation(
        "GET", "/rates", "listRates", "Rates of BTC (or cryptoCode), or of the pairs asked", PUBLIC, "RateList",
        query=(
            Field("currencyPairs", "string", "Comma-separated pairs such as BTC_USD,BTC_EUR"),
            Field("cryptoCode", "string", "The base currency", examples=("BTC",)),
        ),
    ),
    Operation(
        "GET", "/rates/{base}", "listRatesForBase", "Exchange rates of one base currency", PUBLIC, "RateList",
        path_fields=(_BASE,),
    ),
    Operation(
        "GET", "/rates/{base}/{quote}", "getRate", "One exchange rate", PUBLIC, "RateItem",
        path_fields=(_BASE, Field("quote", "string", "The quote currency", examples=("USD",))),
    ),
    Operation("GET", "/currencies", "listCurrencies", "What invoices can be priced in", PUBLIC, "CurrencyList"),
    Operation(
        "POST", "/invoices", "createInvoice", "Create an invoice", TOKEN, "CreatedInvoice",
        facades=("pos", "merchant"), body=INVOICE_FIELDS,
    ),
    Operation(
        "GET", "/invoices", "searchInvoices", "The store's invoices, newest first", TOKEN, "InvoiceList",
        facades=("merchant",),
        query=(
            Field("dateStart", "string", f"Created on or after ({_DATE})"),
            Field("dateEnd", "string", f"Created on or before; a date means the whole day ({_DATE})"),
            Field("status", "string", "", enum=INVOICE_STATUSES),
            Field("orderId", "string", ""),
            Field("itemCode", "string", ""),
            Field("limit", "integer", "At most this many (0: the default, 100)", minimum=0, maximum=1000),
            Field("offset", "integer", "Skip this many", minimum=0, maximum=1_000_000),
        ),
    ),
    Operation(
        "GET", "/invoices/{invoice_id}", "getInvoice",
        "An invoice: in full for its store's tokens, without merchant and buyer data for anyone else",
        TOKEN_OPTIONAL, "InvoiceItem", facades=("pos", "merchant"),
    ),
    Operation(
        "GET", "/invoices/guid/{guid}", "getInvoiceByGuid", "The invoice created with this guid", TOKEN, "InvoiceItem",
        facades=("pos", "merchant"),
    ),
    Operation(
        "DELETE", "/invoices/{invoice_id}", "cancelInvoice", "Cancel an unpaid new invoice (it expires)", TOKEN,
        "InvoiceItem", facades=("merchant",),
    ),
    Operation(
        "DELETE", "/invoices/guid/{guid}", "cancelInvoiceByGuid", "Cancel the unpaid new invoice of this guid", TOKEN,
        "InvoiceItem", facades=("merchant",),
    ),
    Operation(
        "POST", "/invoices/{invoice_id}/notifications", "resendNotification", "Send the invoice's IPN again", TOKEN,
        "Success", facades=("merchant",), body=(_TOKEN_FIELD,),
    ),
    Operation(
        "GET", "/invoice/status", "getInvoiceStatus",
        "What the checkout page polls: the status fields and the page's status region", PUBLIC, "InvoiceStatus",
        query=(Field("id", "string", "The invoice id", required=True),),
    ),
    Operation("GET", "/openapi.json", "getOpenApi", "This document", PUBLIC, "OpenApi"),
)  # fmt: skip
_BY_ROUTE = {(operation.method, operation.path): operation for operation in OPERATIONS}


def operation(method: str, path: str) -> Operation:
    """The declaration of a route; every route must have one (KeyError)."""
    return _BY_ROUTE[method, path]

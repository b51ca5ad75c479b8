"""The OpenAPI 3.1 document of the API, made from the operations `chalicelib.api.shapes` declares.

Requests are described by the same declarations that check them; responses by the
schemas below, which follow the views in `invoices`, `tokens` and `rates` (the contract
test, tests/test_contract.py, holds every answer of the running service to them).
"""

from chalicelib.api import shapes
from chalicelib.api.shapes import Field, Operation
from chalicelib.billing.stores import TRANSACTION_SPEEDS

_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_BOOLEAN = {"type": "boolean"}
_SATS = {"type": "integer", "minimum": 0}
_BTC = {"type": "string", "pattern": r"^[0-9]+\.[0-9]{8}$", "description": "BTC, 8 decimals"}
_PER_CURRENCY = {"type": "object", "additionalProperties": _SATS}
_BTC_PER_CURRENCY = {"type": "object", "additionalProperties": _BTC}


def _object(properties: dict, required: tuple[str, ...] = (), **extra) -> dict:
    return {"type": "object", "required": list(required), "properties": properties, **extra}


def _data(schema: dict) -> dict:
    return _object({"data": schema}, ("data",))


_EXCEPTION_STATUS = {"enum": [False, "paidPartial", "paidOver", "paidLate"]}
_TRANSACTION = _object(
    {"amount": _SATS, "confirmations": _INTEGER, "receivedTime": _INTEGER, "time": _INTEGER, "txid": _STRING},
    ("amount", "confirmations", "receivedTime", "time", "txid"),
)
# In both views, the full one (the store's tokens) and the public one.
_INVOICE_ALWAYS = {
    "id": _STRING,
    "url": _STRING,
    "status": {"enum": list(shapes.INVOICE_STATUSES)},
    "price": _NUMBER,
    "taxIncluded": _NUMBER,
    "currency": _STRING,
    "invoiceTime": _INTEGER,
    "expirationTime": _INTEGER,
    "currentTime": _INTEGER,
    "exceptionStatus": _EXCEPTION_STATUS,
    "transactionSpeed": {"enum": list(TRANSACTION_SPEEDS)},
    "targetConfirmations": _INTEGER,
    "fullNotifications": _BOOLEAN,
    "extendedNotifications": _BOOLEAN,
    "physical": _BOOLEAN,
    "paymentSubtotals": _PER_CURRENCY,
    "paymentTotals": _PER_CURRENCY,
    "paymentDisplayTotals": _BTC_PER_CURRENCY,
    "paymentDisplaySubTotals": _BTC_PER_CURRENCY,
    "exchangeRates": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": _NUMBER}},
    "amountPaid": _SATS,
    "displayAmountPaid": _BTC,
    "transactions": {"type": "array", "items": _TRANSACTION},
    "supportedTransactionCurrencies": {"type": "object"},
    "paymentCodes": {"type": "object"},
    "isCancelled": _BOOLEAN,
    "refundAddressRequestPending": _BOOLEAN,
    "lowFeeDetected": _BOOLEAN,
    "btcPrice": _BTC,
    "btcDue": _BTC,
    "btcPaid": _BTC,
    "rate": _NUMBER,
    "bitcoinAddress": _STRING,
    "paymentUrls": {"type": "object"},
    "addresses": {"type": "object"},
}
_INVOICE_OPTIONAL = {
    "itemDesc": _STRING,
    "redirectURL": _STRING,
    "closeURL": _STRING,
    "underpaidAmount": _NUMBER,
    "overpaidAmount": _NUMBER,
    # The full view only:
    "token": _STRING,
    "orderId": _STRING,
    "itemCode": _STRING,
    "posData": _STRING,
    "guid": _STRING,
    "notificationURL": _STRING,
    "notificationEmail": _STRING,
    "buyer": _object({sub.name: _BOOLEAN if sub.type == "boolean" else _STRING for sub in shapes.BUYER.fields}),
}
_INVOICE = _object({**_INVOICE_ALWAYS, **_INVOICE_OPTIONAL}, tuple(_INVOICE_ALWAYS))
_POLICY = _object(
    {"policy": _STRING, "method": _STRING, "params": {"type": "array", "items": _STRING}},
    ("policy", "method", "params"),
)
_PAIRING = _object(
    {
        "policies": {"type": "array", "items": _POLICY},
        "token": _STRING,
        "facade": {"enum": list(shapes.PAIRABLE_FACADES)},
        "dateCreated": _INTEGER,
        "pairingCode": {"type": ["string", "null"]},
        "label": _STRING,
        "pairingExpiration": _INTEGER,
    },
    ("policies", "token", "facade", "dateCreated", "pairingCode"),
)
_RATE = _object(
    {"code": _STRING, "name": _STRING, "rate": _NUMBER, "cryptoCode": _STRING, "currencyPair": _STRING},
    ("code", "name", "rate"),
)
_CURRENCY = _object(
    {
        "code": _STRING,
        "symbol": _STRING,
        "precision": _INTEGER,
        "name": _STRING,
        "plural": _STRING,
        "alts": _STRING,
        "minimum": _NUMBER,
        "sanctioned": _BOOLEAN,
        "decimals": _INTEGER,
        "chain": _STRING,
    },
    ("code", "symbol", "precision", "name", "plural", "alts", "minimum", "sanctioned", "decimals"),
)
RESPONSES = {
    "CurrencyList": _data({"type": "array", "items": _CURRENCY}),
    "TokenPairing": _data({"type": "array", "items": _PAIRING}),
    "TokenList": _data({"type": "array", "items": {"type": "object", "additionalProperties": _STRING}}),
    "RateList": _data({"type": "array", "items": _RATE}),
    "RateItem": _data(_RATE),
    "CreatedInvoice": _object({"facade": _STRING, "data": _INVOICE}, ("facade", "data")),
    "InvoiceList": _data({"type": "array", "items": _INVOICE}),
    "InvoiceItem": _data(_INVOICE),
    "Success": _data({"const": "Success"}),
    "InvoiceStatus": _object(
        {
            "status": _INVOICE_ALWAYS["status"],
            "exceptionStatus": _EXCEPTION_STATUS,
            "btcDue": _BTC,
            "btcPaid": _BTC,
            "statusRegion": {"type": "string", "description": "The checkout page's status region (HTML)"},
        },
        ("status", "exceptionStatus", "btcDue", "btcPaid", "statusRegion"),
    ),
    "OpenApi": _object({"openapi": _STRING, "paths": {"type": "object"}}, ("openapi", "paths")),
}
_ERRORS = {
    400: "Bad input; the message names the field",
    401: "No valid token, or a signature that does not verify",
    403: "The token's facade or state does not allow this",
    404: "No such object (or not the caller's)",
    415: "A Content-Type other than JSON (or text/plain, or a form)",
    429: "Too many requests; Retry-After says when to try again",
    503: "A service this depends on (exchange rates) is unavailable",
}
_UNAUTHENTICATED_ERRORS = (400, 404, 415, 429, 503)
_SECURITY_SCHEMES = {
    "token": {"type": "apiKey", "in": "query", "name": "token", "description": "An API token (POST: in the body)"},
    "identity": {
        "type": "apiKey",
        "in": "header",
        "name": "x-identity",
        "description": "The client's public key, compressed, in hex (its SIN is the client id)",
    },
    "legacyApiKey": {
        "type": "http",
        "scheme": "basic",
        "description": "A store's legacy API key as the user name (BTCPay's legacy API): the merchant facade, unsigned",
    },
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": "x-signature",
        "description": "ECDSA secp256k1 signature (DER, hex) of SHA-256 of the full URL requested followed by the body",
    },
}
_SIGNED = {"identity": [], "signature": []}


def _security(operation: Operation) -> list[dict]:
    """Who may call: a token in the query, or (POST) in the body, signed when the token is bound to a client id;
    where merchants may, a legacy API key."""
    token_in_query = operation.method not in ("POST", "PUT")
    with_token = [{"token": [], **_SIGNED}, {"token": []}] if token_in_query else [_SIGNED, {}]
    if "merchant" in operation.facades:
        with_token.append({"legacyApiKey": []})
    return {
        shapes.PUBLIC: [],
        shapes.SIGNED: [_SIGNED],
        shapes.PAIRING: [{}, _SIGNED],
        shapes.TOKEN: with_token,
        shapes.TOKEN_OPTIONAL: [*with_token, {}],
    }[operation.access]


def field_schema(field: Field) -> dict:
    schema: dict = {
        "string": _STRING,
        "url": {"type": "string", "format": "uri"},
        "email": {"type": "string", "format": "email"},
        "number": {"type": ["number", "string"]},
        "boolean": _BOOLEAN,
        "integer": _INTEGER,
        "object": {"type": "object"},
    }[field.type].copy()
    optional = {
        "description": field.description,
        "maxLength": field.max_length,
        "minimum": field.minimum,
        "maximum": field.maximum,
        "pattern": field.pattern,
        "default": field.default,
        "examples": list(field.examples),
        "x-aliases": list(field.aliases),
    }
    schema |= {key: value for key, value in optional.items() if value not in (None, "", [])}
    if field.enum:
        schema["enum"] = list(field.enum)
    if field.fields:
        schema["properties"] = {sub.name: field_schema(sub) for sub in field.fields}
    return schema


def _body(fields: tuple[Field, ...]) -> dict:
    schema = _object(
        {field.name: field_schema(field) for field in fields}, tuple(field.name for field in fields if field.required)
    )
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _parameters(operation: Operation) -> list[dict]:
    path = [
        {"name": field.name, "in": "path", "required": True, "schema": {**field_schema(field), "minLength": 1}}
        for field in operation.path_parameters
    ]
    query = [
        {"name": field.name, "in": "query", "required": field.required, "schema": field_schema(field)}
        for field in operation.query
    ]
    return path + query


def _responses(operation: Operation) -> dict:
    errors = _UNAUTHENTICATED_ERRORS if operation.access == shapes.PUBLIC else tuple(_ERRORS)
    ok = {"$ref": f"#/components/schemas/{operation.response}"}
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    return responses | {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in errors}


def _operation(operation: Operation) -> dict:
    described: dict = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "security": _security(operation),
        "parameters": _parameters(operation),
        "responses": _responses(operation),
    }
    if operation.facades:
        described["description"] = f"Tokens of the {' or '.join(operation.facades)} facade."
    if operation.body:
        described["requestBody"] = _body(operation.body)
    return described


def document(operations: tuple[Operation, ...]) -> dict:
    paths: dict = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    error = _object({"error": _STRING}, ("error",))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "paylambda",
            "version": "1.0.0",
            "description": "A BitPay-compatible payment API. Field names are read in any letter case; "
            "x-aliases lists the other names BitPay clients send.",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": error, **RESPONSES},
            "responses": {
                f"Error{status}": {
                    "description": description,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for status, description in _ERRORS.items()
            },
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }

"""Every DynamoDB table, as pynamodb models, and the one function that creates them.

Keys and indexes follow the access paths of the API so that no request needs
a Scan: a token by its value, by SIN, by pairing code and by store; stores by
owner; invoices by id, and by store and time (newest first) through indexes
whose hash key already carries the filter (status, orderId, itemCode).

Times are epoch milliseconds (what BitPay's wire format uses) except TTL
attributes, which DynamoDB requires in epoch seconds.
"""

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from types import SimpleNamespace
from typing import Any

from botocore.config import Config
from botocore.parsers import ResponseParserFactory
from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection, TableConnection
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.settings import get_settings


def now_ms() -> int:
    return int(time.time() * 1000)


def _meta(table_variable: str, table_suffix: str) -> type:
    settings = get_settings()

    class Meta:
        # The deployment template sets this variable on every function (deploy/template.py).
        table_name_variable = table_variable
        table_name = os.environ.get(table_variable) or f"paylambda-{settings.stage}-{table_suffix}"
        region = settings.region
        host = settings.dynamodb_endpoint
        billing_mode = "PAY_PER_REQUEST"

    return Meta


def _index_meta(index_name: str, projection=None) -> type:
    class Meta:
        pass

    Meta.projection = projection or AllProjection()

    Meta.index_name = index_name
    return Meta


_shared_lock = threading.RLock()
_shared: Connection | None = None
_raw: Connection | None = None


# Connections kept open to DynamoDB (pynamodb's default is 10): a checker writes up to
# watcher.RECORDERS invoices at once beside its reads, each write on a connection of its own.
CONNECTIONS = 32


def shared_connection() -> Connection:
    """The process's one DynamoDB connection, under every model and every transaction.

    Each botocore session and client costs ~120 ms CPU and 11 MiB to build, most of a cold start
    when every model builds its own. Clients are thread-safe, sessions are not: both are built once,
    under a lock.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            settings = get_settings()
            connection = Connection(
                region=settings.region, host=settings.dynamodb_endpoint, max_pool_connections=CONNECTIONS
            )
            connection.client  # noqa: B018 (builds the session and client now, under the lock)
            _shared = connection
        return _shared


class _JsonAnswers:
    """A parser that leaves a successful answer as the JSON DynamoDB sent (errors parse as usual).

    botocore's parser walks every attribute value through the service's shapes: for a page of
    100 invoices it costs ten times a plain JSON decode, for a result `read_only` rebuilds anyway.
    """

    def __init__(self, modelled: Any):
        self._modelled = modelled

    def parse(self, response: dict, shape: Any) -> dict:
        if response["status_code"] >= 300:
            return self._modelled.parse(response, shape)
        parsed = json.loads(response["body"]) if response["body"] else {}
        parsed["ResponseMetadata"] = {"HTTPStatusCode": response["status_code"], "HTTPHeaders": response["headers"]}
        return parsed


class _JsonAnswersFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> _JsonAnswers:
        return _JsonAnswers(super().create_parser(protocol_name))


def raw_connection() -> Connection:
    """A connection whose answers stay DynamoDB JSON, for read-only routes that decode with `read_only`.

    Its client comes from the shared session (and knows every model's table through it).
    """
    global _raw
    with _shared_lock:
        if _raw is None:
            shared = shared_connection()
            session = shared.session
            modelled = session.get_component("response_parser_factory")
            session.register_component("response_parser_factory", _JsonAnswersFactory())
            try:
                # A client's meta.config drops parameter_validation (botocore passes it on apart), and
                # validating a BatchGetItem of 100 keys costs more than decoding its answer: off, as
                # pynamodb has it on the shared client. DynamoDB still refuses a malformed request.
                config = shared.client.meta.config.merge(Config(parameter_validation=False))
                client = session.create_client("dynamodb", shared.region, endpoint_url=shared.host, config=config)
            finally:
                session.register_component("response_parser_factory", modelled)
            connection = Connection(region=shared.region, host=shared.host)
            connection._client, connection._tables = client, shared._tables
            _raw = connection
        return _raw


def _number(value: dict) -> int | float:
    text = value["N"]
    # pynamodb decodes numbers with json.loads: an int when it is one, else a float.
    try:
        return int(text)
    except ValueError:
        return float(text)


def _decoder(attribute: Attribute) -> Callable[[dict], Any]:
    """How to read one attribute's DynamoDB JSON value as pynamodb's deserialize would."""
    if isinstance(attribute, MapAttribute) and type(attribute) is not MapAttribute:
        model = type(attribute)
        return lambda value: read_only(model, value["M"])
    if isinstance(attribute, ListAttribute) and attribute.element_type is not None:
        element = _decoder(attribute.element_type())
        return lambda value: [element(item) for item in value["L"]]
    if isinstance(attribute, UnicodeAttribute):
        return itemgetter("S")
    if isinstance(attribute, BooleanAttribute):
        return itemgetter("BOOL")
    if type(attribute) in (NumberAttribute, VersionAttribute):
        return _number
    return lambda value: attribute.deserialize(attribute.get_value(value))


@cache
def _plan(model: type) -> tuple[tuple[str, str, Callable[[dict], Any], Any], ...]:
    """Each attribute's name, name in DynamoDB, decoder and default: worked out once per model."""
    return tuple(
        (name, attribute.attr_name, _decoder(attribute), attribute.default)
        for name, attribute in model.get_attributes().items()
    )


def read_only(model: type, item: dict[str, dict]) -> SimpleNamespace:
    """An item (or map) straight from DynamoDB JSON, as pynamodb's `from_raw_data` would read it
    (defaults for absent attributes, the same types), but as a plain record: for views, never saved."""
    values: dict[str, Any] = {}
    for name, stored_name, decode, default in _plan(model):
        value = item.get(stored_name)
        if value and "NULL" not in value:
            values[name] = decode(value)
        else:
            values[name] = default() if callable(default) else default
    record = SimpleNamespace(**values)
    record.attribute_values = values
    return record


def query_read_only(
    model: type[Model], limit: int, skip: int = 0, keep: Callable[[SimpleNamespace], bool] | None = None, **query: Any
) -> Iterator[SimpleNamespace]:
    """`limit` items of a Query (pynamodb's Connection.query arguments) but the first `skip`, as
    `read_only` records, page after page until the limit or the end.

    An index that projects only some attributes answers with keys (and what it filters on): the
    items themselves are then read by key, a BatchGetItem per page, in the index's order, and
    never those skipped.

    `keep` chooses among the items read, on what the index does not carry: `limit` and `skip` then
    count the items kept, and those skipped are read too.
    """
    model._get_connection()  # puts the table's schema on the shared connection
    connection = raw_connection()
    start = query.pop("exclusive_start_key", None)
    index = next((i for i in indexes(model) if i.Meta.index_name == query.get("index_name")), None)
    whole = index is None or index.Meta.projection.projection_type == "ALL"
    asked = 0
    while limit > 0:
        # With `keep`: as many as still wanted (none read for nothing when all are kept), twice as
        # many each time too few were (few round trips when few are), a BatchGetItem's worth at most.
        asked = limit if keep is None else min(max(limit, 2 * asked), _BATCH_GET_KEYS)
        page = connection.query(model.Meta.table_name, limit=asked, exclusive_start_key=start, **query)
        items = page.get("Items", [])
        if keep is None:
            skipped = min(skip, len(items))
            skip, limit, items = skip - skipped, limit - skipped, items[skipped:]
        for item in items if whole else _items_by_key(model, connection, items):
            record = read_only(model, item)
            if keep is not None and not keep(record):
                continue
            limit -= 1
            if skip:
                skip -= 1
            else:
                yield record
            if limit == 0:
                return
        start = page.get("LastEvaluatedKey")
        if not start:
            return


# BatchGetItem's most keys a request.
_BATCH_GET_KEYS = 100


def _items_by_key(model: type[Model], connection: Connection, found: list[dict]) -> list[dict]:
    """The table's items of the index items `found`, in their order (eventually consistent, as the index is)."""
    key_names = [model._hash_key_attribute().attr_name]
    if model._range_key_attribute() is not None:
        key_names.append(model._range_key_attribute().attr_name)

    def key_of(item: dict) -> tuple:
        return tuple(next(iter(item[name].values())) for name in key_names)

    items: dict[tuple, dict] = {}
    for first in range(0, len(found), _BATCH_GET_KEYS):
        wanted = [{name: item[name] for name in key_names} for item in found[first : first + _BATCH_GET_KEYS]]
        while wanted:
            answer = connection.dispatch("BatchGetItem", {"RequestItems": {model.Meta.table_name: {"Keys": wanted}}})
            items.update((key_of(item), item) for item in answer["Responses"].get(model.Meta.table_name, []))
            # Keys DynamoDB left for later (throttling, or past 16 MB): asked again.
            wanted = answer.get("UnprocessedKeys", {}).get(model.Meta.table_name, {}).get("Keys", [])
    return [items[key_of(item)] for item in found if key_of(item) in items]


def indexes(model: type[Model]) -> list[GlobalSecondaryIndex]:
    """The model's global secondary indexes, as it declares them."""
    return [value for value in vars(model).values() if isinstance(value, GlobalSecondaryIndex)]


class SharedConnectionModel(Model):
    """A model whose table connection speaks through `shared_connection()`."""

    _table_lock = threading.Lock()

    @classmethod
    def _get_connection(cls) -> TableConnection:
        table = cls._connection
        if table is None or table.table_name != cls.Meta.table_name:
            with cls._table_lock:
                table = cls._connection
                if table is None or table.table_name != cls.Meta.table_name:
                    # pynamodb's own builds the table's schema and a connection of its own, not yet
                    # used (its client is made on first use); the schema moves to the shared one.
                    table = super()._get_connection()
                    connection = shared_connection()
                    connection.add_meta_table(table.get_meta_table())
                    table.connection = connection
        return table


def transaction() -> TransactWrite:
    """`with transaction() as t:` writes that all happen or none do (DynamoDB TransactWriteItems)."""
    return TransactWrite(connection=shared_connection())


def failed_conditions(error: PynamoDBException) -> list[bool]:
    """For a cancelled transaction, whether each item's condition failed, in the order pynamodb sends
    them: condition checks, deletes, puts, updates."""
    reasons = getattr(error, "cancellation_reasons", None) or []
    return [reason is not None and reason.code == "ConditionalCheckFailed" for reason in reasons]


def condition_failed(error: PynamoDBException) -> bool:
    """True when a conditional write (alone or inside a transaction) lost to another writer."""
    if error.cause_response_code == "ConditionalCheckFailedException":
        return True
    reasons = getattr(error, "cancellation_reasons", None) or []
    return any(reason is not None and reason.code == "ConditionalCheckFailed" for reason in reasons)


def is_expired(expiration: datetime | None) -> bool:
    """DynamoDB deletes expired items only eventually, so reads check the TTL too."""
    return expiration is not None and expiration <= datetime.now(UTC)


class UserModel(SharedConnectionModel):
    Meta = _meta("USERS_TABLE", "users")

    login = UnicodeAttribute(hash_key=True)
    password_hash = UnicodeAttribute()
    is_admin = BooleanAttribute(default=False)
    created = NumberAttribute(default_for_new=now_ms)


class StoresByOwner(GlobalSecondaryIndex):
    Meta = _index_meta("owner-index")
    owner = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class StoreModel(SharedConnectionModel):
    Meta = _meta("STORES_TABLE", "stores")

    store_id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    name = UnicodeAttribute()
    default_currency = UnicodeAttribute(default="USD")
    website = UnicodeAttribute(null=True)
    # Extended public key or output descriptor; never a private key.
    wallet = UnicodeAttribute(null=True)
    # Advanced atomically (UpdateItem ADD) so no two invoices share an address.
    next_address_index = NumberAttribute(default=0)
    # Unused addresses in a row the merchant's wallet looks ahead (its "gap limit"); the settings page warns past it.
    gap_limit = NumberAttribute(default=20)
    invoice_expiration_minutes = NumberAttribute(default=15)
    transaction_speed = UnicodeAttribute(default="medium")
    # The checkout's language when the buyer's browser asks for none it speaks.
    default_language = UnicodeAttribute(default="en")
    created = NumberAttribute(default_for_new=now_ms)
    # The tokens-table key of the store's legacy API key (a hash, see api_keys), when it has one.
    api_key = UnicodeAttribute(null=True)
    # Unsigned POST /invoices?storeId= may create invoices (BTCPay's "anyone can create invoice").
    anyone_can_invoice = BooleanAttribute(default=False)
    # Gets the emails of paid, confirmed, complete and late or partly paid invoices.
    contact_email = UnicodeAttribute(null=True)
    # Signs every notification (X-Paylambda-Signature); made on first use, rotated from the settings page.
    notification_secret = UnicodeAttribute(null=True)

    by_owner = StoresByOwner()


class TokensBySin(GlobalSecondaryIndex):
    Meta = _index_meta("sin-index")
    sin = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class TokensByPairingCode(GlobalSecondaryIndex):
    Meta = _index_meta("pairing-code-index")
    pairing_code = UnicodeAttribute(hash_key=True)


class TokensByStore(GlobalSecondaryIndex):
    Meta = _index_meta("store-index")
    store_id = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class TokensByMinter(GlobalSecondaryIndex):
    """Sparse: only codes a merchant's client made through the API, so a revocation finds what it minted."""

    Meta = _index_meta("minted-by-index")
    minted_by = UnicodeAttribute(hash_key=True)


class TokenModel(SharedConnectionModel):
    """An API token, and while it is pending, the pairing request behind it.

    A client-requested pairing has a SIN and waits for a person to approve it
    for a store; a merchant-made pairing code has a store and waits for a
    client to claim it. Either way the item carries `pairing_expiration`
    (a TTL) until it becomes active, when the attribute is removed.
    """

    Meta = _meta("TOKENS_TABLE", "tokens")

    PENDING = "pending"
    ACTIVE = "active"
    REVOKED = "revoked"

    token = UnicodeAttribute(hash_key=True)
    facade = UnicodeAttribute()
    status = UnicodeAttribute(default=PENDING)
    store_id = UnicodeAttribute(null=True)
    sin = UnicodeAttribute(null=True)
    label = UnicodeAttribute(null=True)
    pairing_code = UnicodeAttribute(null=True)
    pairing_expiration = TTLAttribute(null=True)
    created = NumberAttribute(default_for_new=now_ms)
    # The merchant token whose client asked for this code (POST /tokens): revoking it revokes the code.
    minted_by = UnicodeAttribute(null=True)
    # The merchant has had the token's value shown once on the Access tokens page.
    value_shown = BooleanAttribute(null=True)

    by_sin = TokensBySin()
    by_pairing_code = TokensByPairingCode()
    by_store = TokensByStore()
    by_minter = TokensByMinter()

    @property
    def is_expired(self) -> bool:
        return self.status == self.PENDING and is_expired(self.pairing_expiration)


# The search indexes carry only keys and what a Query on them filters on: search reads the
# invoices themselves by key (query_read_only).
# Projecting everything, every write of an invoice (a new confirmation, its version) rewrote each
# index; now an index is written only when its keys or these few attributes change. Those on
# orderId, itemCode and buyer email carry nothing that changes after creation, so a status change
# never rewrites them: their searches filter status and exceptionStatus on the invoices read.
class InvoicesByStore(GlobalSecondaryIndex):
    Meta = _index_meta("store-created-index", IncludeProjection(["exception_status"]))
    store_id = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class InvoicesByStatus(GlobalSecondaryIndex):
    Meta = _index_meta("store-status-index", IncludeProjection(["exception_status"]))
    store_status = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class InvoicesByOrderId(GlobalSecondaryIndex):
    Meta = _index_meta("store-order-index", IncludeProjection(["item_code"]))
    store_order_id = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class InvoicesByItemCode(GlobalSecondaryIndex):
    Meta = _index_meta("store-item-index", KeysOnlyProjection())
    store_item_code = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class InvoicesByBuyerEmail(GlobalSecondaryIndex):
    """Sparse: only invoices with a buyer email carry `store_buyer_email` ("store#email", in lower case)."""

    Meta = _index_meta("store-buyer-email-index", KeysOnlyProjection())
    store_buyer_email = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


# The watch list is spread over this many partitions (`watch_partition`), each queried by the planner.
WATCH_SHARDS = 4


def watch_partition(network: str, invoice_id: str, urgent: bool = True) -> str:
    """The watch index's hash key for an invoice: its network, a shard derived from its id, and
    whether it is still open ("network#open#shard", until the chain has answered a check after its
    expiry) or waits for late payments and confirmations ("network#shard").

    Open invoices live apart so that the planner reads and queues them before the far longer
    list of those waiting, however long that list grows.
    """
    shard = int.from_bytes(hashlib.sha256(invoice_id.encode()).digest()[:4], "big") % WATCH_SHARDS
    return f"{network}#open#{shard}" if urgent else f"{network}#{shard}"


def watch_partitions(network: str, urgent: bool) -> list[str]:
    """Every partition of the watch index holding the network's open invoices, or its waiting ones
    (with the bare network name that invoices made before the index was sharded carry)."""
    if urgent:
        return [f"{network}#open#{shard}" for shard in range(WATCH_SHARDS)]
    return [network, *(f"{network}#{shard}" for shard in range(WATCH_SHARDS))]


class InvoicesWatched(GlobalSecondaryIndex):
    """Sparse: only invoices still being watched carry `watch_network`, so the planner's
    Queries cost what the watched invoices cost, never what all invoices ever made do.

    Projects only what the planner decides from; the checker reads the invoice itself.
    """

    Meta = _index_meta(
        "watch-shard-index", IncludeProjection(["status", "expiration", "checked_after_expiry", "address"])
    )
    watch_network = UnicodeAttribute(hash_key=True)
    next_check = NumberAttribute(range_key=True)


class PaymentAttribute(MapAttribute):
    """One transaction output paying an invoice's address, as last seen."""

    txid = UnicodeAttribute()
    vout = NumberAttribute()
    amount = NumberAttribute()
    confirmations = NumberAttribute()
    first_seen = NumberAttribute()
    block_height = NumberAttribute(null=True)
    block_time = NumberAttribute(null=True)
    # Absent on payments recorded before lateness was decided on sight.
    late = BooleanAttribute(null=True)


class BuyerAttribute(MapAttribute):
    name = UnicodeAttribute(null=True)
    address1 = UnicodeAttribute(null=True)
    address2 = UnicodeAttribute(null=True)
    locality = UnicodeAttribute(null=True)
    region = UnicodeAttribute(null=True)
    postalCode = UnicodeAttribute(null=True)
    country = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    notify = BooleanAttribute(null=True)


class InvoiceModel(SharedConnectionModel):
    Meta = _meta("INVOICES_TABLE", "invoices")

    invoice_id = UnicodeAttribute(hash_key=True)
    store_id = UnicodeAttribute()
    # The token that created it: a pos token reads only its own invoices.
    token = UnicodeAttribute()
    facade = UnicodeAttribute()
    created = NumberAttribute()
    expiration = NumberAttribute()
    status = UnicodeAttribute()
    exception_status = UnicodeAttribute(null=True)
    price = UnicodeAttribute()
    # Tax the price includes, in the invoice's currency (BitPay's taxIncluded).
    tax_included = UnicodeAttribute(default="0")
    currency = UnicodeAttribute()
    rate = UnicodeAttribute()
    btc_due_sats = NumberAttribute()
    btc_paid_sats = NumberAttribute(default=0)
    address = UnicodeAttribute()
    # BitPay's per-invoice resource token (not an API token).
    invoice_token = UnicodeAttribute()
    address_index = NumberAttribute()
    transaction_speed = UnicodeAttribute()
    order_id = UnicodeAttribute(null=True)
    item_code = UnicodeAttribute(null=True)
    item_desc = UnicodeAttribute(null=True)
    pos_data = UnicodeAttribute(null=True)
    guid = UnicodeAttribute(null=True)
    notification_url = UnicodeAttribute(null=True)
    notification_email = UnicodeAttribute(null=True)
    # The store's contact email when the invoice was made: its emails go there too.
    contact_email = UnicodeAttribute(null=True)
    # Why the merchant marked it invalid (or complete) by hand.
    mark_reason = UnicodeAttribute(null=True)
    redirect_url = UnicodeAttribute(null=True)
    close_url = UnicodeAttribute(null=True)
    full_notifications = BooleanAttribute(default=False)
    extended_notifications = BooleanAttribute(default=False)
    physical = BooleanAttribute(default=False)
    buyer = BuyerAttribute(default=dict)
    # The merchant cancelled it (DELETE) before any payment: expired, with BitPay's isCancelled.
    cancelled = BooleanAttribute(default=False)

    # Composite hash keys of the filtered search indexes; the indexes on
    # orderId, itemCode and the buyer's email are sparse (absent when the field is).
    store_status = UnicodeAttribute()
    store_order_id = UnicodeAttribute(null=True)
    store_item_code = UnicodeAttribute(null=True)
    store_buyer_email = UnicodeAttribute(null=True)

    # Where the API was reached when the invoice was made: the `url` in notifications.
    base_url = UnicodeAttribute(null=True)
    # Optimistic locking (pynamodb conditions every save and update on it and advances it):
    # concurrent watchers never double-count a payment nor lose an update.
    version = VersionAttribute()
    payments = ListAttribute(of=PaymentAttribute, default=list)
    notification_count = NumberAttribute(default=0)
    # Present while the invoice is watched (see InvoicesWatched): its `watch_partition`, and the
    # first moment a check is due (its creation; later checks follow the planner's schedule).
    watch_network = UnicodeAttribute(null=True)
    next_check = NumberAttribute(null=True)
    # When the chain first answered a check after the expiration: a payment first seen after
    # that came late (payments.late_on_sight). Until then the invoice gets every run's check.
    checked_after_expiry = NumberAttribute(null=True)

    by_store = InvoicesByStore()
    by_status = InvoicesByStatus()
    by_order_id = InvoicesByOrderId()
    by_item_code = InvoicesByItemCode()
    by_buyer_email = InvoicesByBuyerEmail()
    by_watch = InvoicesWatched()


class SessionsByLogin(GlobalSecondaryIndex):
    Meta = _index_meta("login-index")
    login = UnicodeAttribute(hash_key=True)


class SessionModel(SharedConnectionModel):
    """A signed-in browser. The cookie carries a secret whose SHA-256 is the key,
    so the table alone does not let anyone take over a session."""

    Meta = _meta("SESSIONS_TABLE", "sessions")

    session_hash = UnicodeAttribute(hash_key=True)
    login = UnicodeAttribute()
    csrf_token = UnicodeAttribute()
    expiration = TTLAttribute()
    created = NumberAttribute(default_for_new=now_ms)

    by_login = SessionsByLogin()


class LimitModel(SharedConnectionModel):
    """One fixed-window abuse counter (security.limits): key "<limit>#<subject>", e.g. "sign-in-account#alice"."""

    Meta = _meta("LIMITS_TABLE", "limits")

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute()
    # The window's end; the counter is void after it even before DynamoDB deletes it.
    expiration = TTLAttribute()


class SecretModel(SharedConnectionModel):
    """Server-side secrets made once per deployment (the device cookies' HMAC key); never sent to anyone."""

    Meta = _meta("SECRETS_TABLE", "secrets")

    name = UnicodeAttribute(hash_key=True)
    value = UnicodeAttribute()


class NotificationsOutbox(GlobalSecondaryIndex):
    """Sparse: only undelivered notifications, so a sweep can find any whose queue message was lost."""

    # Keys only: the sweep reads the keys and moves next_attempt; a delivery's lease and attempts
    # then write the index only when next_attempt moves.
    Meta = _index_meta("outbox-index", KeysOnlyProjection())
    outbox = UnicodeAttribute(hash_key=True)
    next_attempt = NumberAttribute(range_key=True)


class AttemptAttribute(MapAttribute):
    time = NumberAttribute()
    # The receiver's HTTP status; absent when no response came back.
    status = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    duration_ms = NumberAttribute()


class NotificationModel(SharedConnectionModel):
    """One IPN for an invoice, numbered in the order it must be delivered, with every attempt made."""

    Meta = _meta("NOTIFICATIONS_TABLE", "notifications")

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"

    invoice_id = UnicodeAttribute(hash_key=True)
    sequence = NumberAttribute(range_key=True)
    store_id = UnicodeAttribute()
    event_code = NumberAttribute()
    event_name = UnicodeAttribute()
    url = UnicodeAttribute()
    # The exact JSON posted, fixed when the event happened.
    body = UnicodeAttribute()
    created = NumberAttribute()
    state = UnicodeAttribute(default=PENDING)
    attempts = ListAttribute(of=AttemptAttribute, default=list)
    outbox = UnicodeAttribute(null=True)
    next_attempt = NumberAttribute(null=True)
    # Set while one consumer delivers it, so two never post the same notification at once.
    lease_until = NumberAttribute(null=True)

    by_outbox = NotificationsOutbox()


class ClaimModel(SharedConnectionModel):
    """Something only one owner may ever use, claimed by a conditional PutItem on its own key.

    "address#bc1q...": the receive address of one invoice, written in the invoice's own
    transaction, so no address can serve two invoices however the stores' wallets overlap.
    "wallet#<Wallet.identity>": the store whose wallet it is, released when the store changes it.
    "sin#<SIN>": the one store a client id pairs with, written in its token's activation transaction.
    """

    Meta = _meta("CLAIMS_TABLE", "claims")

    key = UnicodeAttribute(hash_key=True)
    store_id = UnicodeAttribute()
    invoice_id = UnicodeAttribute(null=True)
    created = NumberAttribute(default_for_new=now_ms)


ALL_MODELS: tuple[type[Model], ...] = (
    UserModel,
    StoreModel,
    TokenModel,
    InvoiceModel,
    SessionModel,
    LimitModel,
    SecretModel,
    NotificationModel,
    ClaimModel,
)


def create_tables(models: tuple[type[Model], ...] = ALL_MODELS) -> list[str]:
    """Create every missing table (with its TTL); safe to run any number of times."""
    created = []
    for model in models:
        if not model.exists():
            model.create_table(wait=True)
            created.append(model.Meta.table_name)
    return created

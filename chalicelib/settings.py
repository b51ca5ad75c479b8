"""Deployment settings, read once from the environment.

Chalice sets the environment per stage from `.chalice/config.json`; the local
run command and the tests set the same variables themselves.
"""

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache


@dataclass(frozen=True)
class Rate:
    """At most `count` per `seconds` (a fixed window) for one subject: written "count/seconds"."""

    count: int
    seconds: int


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    # Points pynamodb at a local DynamoDB (moto's server); unset on AWS.
    dynamodb_endpoint: str | None
    # Overrides scheme, host and path prefix when the service sits behind a
    # proxy (CloudFront) that rewrites the Host header.
    public_base_url: str | None
    pairing_ttl_seconds: int
    rate_source: str
    fixed_rates: dict[str, Decimal]
    rate_max_age_seconds: int
    rate_timeout_seconds: float
    kraken_url: str
    coinbase_url: str
    bitcoin_network: str
    # An Esplora-compatible HTTP API (mempool.space, blockstream.info, a merchant's own electrs).
    esplora_url: str
    esplora_concurrency: int
    # The Esplora server's requests per second for all checkers together (0: unpaced), and how many
    # checkers run at once at most (the checks queue's MaximumConcurrency): each paces to its share.
    esplora_rate_limit: float
    check_concurrency: int
    esplora_timeout_seconds: float
    # `make run`'s own test chain (scripts/local_chain.py): its controls pay and mine on it. Never on AWS.
    local_chain_url: str | None
    # The queue the watch planner sends due invoices to, read by the checkers.
    checks_queue: str
    checks_queue_url: str | None
    # At most this many checks of invoices past their expiry per planner run (open ones are never capped).
    late_checks_per_run: int
    # How long after its expiration an invoice is still watched (late payments, confirmations).
    monitoring_window_seconds: int
    # How far short of the amount due a payment may be and still count as paid in full.
    payment_tolerance_percent: Decimal
    # Lets IPNs go to loopback and private addresses: the local stack's receivers live there.
    allow_private_notification_urls: bool
    notifications_queue: str
    # Optional: otherwise looked up from the queue's name on first use.
    notifications_queue_url: str | None
    # SQS delays a message by at most 900 s; longer back-offs are reached by re-queueing.
    notification_max_delay_seconds: int
    notification_timeout_seconds: float
    # Abuse limits (chalicelib.security.limits). Per address: API Gateway's sourceIp, which the client cannot set.
    pairing_failures_per_address: Rate
    # Wrong tries naming one existing code (another client id, a facade it cannot serve); then it is burned.
    pairing_failures_per_code: Rate
    pending_tokens_per_address: Rate
    sign_in_failures_per_account: Rate
    # Higher than per account: many people may share one address (an office, a mobile carrier's NAT).
    sign_in_failures_per_address: Rate
    # A browser holding the account's device cookie counts here instead of per account.
    sign_in_failures_per_device: Rate
    # The From address of invoice emails (verified in SES); no emails when unset.
    email_sender: str | None
    # An SMTP server to send them through instead of SES (the local stack's sink).
    smtp_host: str | None
    smtp_port: int

    @property
    def test_chain_controls(self) -> bool:
        """The checkout's pay / mine / expire buttons: on regtest, watching the local test chain, only."""
        return (
            self.bitcoin_network == "regtest"
            and self.local_chain_url is not None
            and self.esplora_url == self.local_chain_url
        )


# Public Esplora instances per network, used when ESPLORA_URL is not set.
_DEFAULT_ESPLORA = {
    "main": "https://mempool.space/api",
    "test": "https://mempool.space/testnet/api",
    "signet": "https://mempool.space/signet/api",
    "regtest": "http://127.0.0.1:3002",
}


def _flag(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _rate(raw: str) -> Rate:
    count, _, seconds = raw.partition("/")
    return Rate(count=int(count), seconds=int(seconds))


def _fixed_rates(raw: str) -> dict[str, Decimal]:
    return {code.upper(): Decimal(str(rate)) for code, rate in json.loads(raw).items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ.get
    stage = env("STAGE", "local")
    network = env("BITCOIN_NETWORK", "main")
    pairing_ttl = int(env("PAIRING_TTL_SECONDS", str(24 * 3600)))
    return Settings(
        stage=stage,
        region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
        dynamodb_endpoint=env("DYNAMODB_ENDPOINT") or None,
        public_base_url=(env("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        pairing_ttl_seconds=pairing_ttl,
        rate_source=env("RATE_SOURCE", "fixed"),
        fixed_rates=_fixed_rates(
            env("FIXED_RATES", '{"USD": "65000", "EUR": "60000", "GBP": "52000", "JPY": "9750000", "CAD": "89000"}')
        ),
        rate_max_age_seconds=int(env("RATE_MAX_AGE_SECONDS", "300")),
        rate_timeout_seconds=float(env("RATE_TIMEOUT_SECONDS", "3")),
        kraken_url=env("KRAKEN_URL", "https://api.kraken.com"),
        coinbase_url=env("COINBASE_URL", "https://api.coinbase.com"),
        bitcoin_network=network,
        esplora_url=(env("ESPLORA_URL") or _DEFAULT_ESPLORA.get(network, "")).rstrip("/"),
        esplora_concurrency=max(1, int(env("ESPLORA_CONCURRENCY", "4"))),
        esplora_rate_limit=max(0.0, float(env("ESPLORA_RATE_LIMIT", "0"))),
        check_concurrency=max(1, int(env("CHECK_CONCURRENCY", "2"))),
        esplora_timeout_seconds=float(env("ESPLORA_TIMEOUT_SECONDS", "10")),
        local_chain_url=(env("LOCAL_CHAIN_URL") or "").rstrip("/") or None,
        checks_queue=env("CHECKS_QUEUE") or f"paylambda-{stage}-checks",
        checks_queue_url=env("CHECKS_QUEUE_URL") or None,
        late_checks_per_run=max(0, int(env("LATE_CHECKS_PER_RUN", "300"))),
        monitoring_window_seconds=int(env("MONITORING_WINDOW_SECONDS", str(24 * 3600))),
        payment_tolerance_percent=Decimal(env("PAYMENT_TOLERANCE_PERCENT", "0")),
        allow_private_notification_urls=_flag(env("ALLOW_PRIVATE_NOTIFICATION_URLS", "false")),
        notifications_queue=env("NOTIFICATIONS_QUEUE") or f"paylambda-{stage}-notifications",
        notifications_queue_url=env("NOTIFICATIONS_QUEUE_URL") or None,
        notification_max_delay_seconds=min(900, int(env("NOTIFICATION_MAX_DELAY_SECONDS", "900"))),
        notification_timeout_seconds=float(env("NOTIFICATION_TIMEOUT_SECONDS", "30")),
        email_sender=env("EMAIL_SENDER") or None,
        smtp_host=env("SMTP_HOST") or None,
        smtp_port=int(env("SMTP_PORT", "25")),
        pairing_failures_per_address=_rate(env("LIMIT_PAIRING_FAILURES_PER_ADDRESS", "20/900")),
        pairing_failures_per_code=_rate(env("LIMIT_PAIRING_FAILURES_PER_CODE", f"5/{pairing_ttl}")),
        pending_tokens_per_address=_rate(env("LIMIT_PENDING_TOKENS_PER_ADDRESS", "30/3600")),
        sign_in_failures_per_account=_rate(env("LIMIT_SIGN_IN_FAILURES_PER_ACCOUNT", "5/900")),
        sign_in_failures_per_address=_rate(env("LIMIT_SIGN_IN_FAILURES_PER_ADDRESS", "20/900")),
        sign_in_failures_per_device=_rate(env("LIMIT_SIGN_IN_FAILURES_PER_DEVICE", "10/900")),
    )

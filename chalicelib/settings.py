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


def _fixed_rates(raw: str) -> dict[str, Decimal]:
    return {code.upper(): Decimal(str(rate)) for code, rate in json.loads(raw).items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ.get
    return Settings(
        stage=env("STAGE", "local"),
        region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
        dynamodb_endpoint=env("DYNAMODB_ENDPOINT") or None,
        public_base_url=(env("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        pairing_ttl_seconds=int(env("PAIRING_TTL_SECONDS", str(24 * 3600))),
        rate_source=env("RATE_SOURCE", "fixed"),
        fixed_rates=_fixed_rates(
            env("FIXED_RATES", '{"USD": "65000", "EUR": "60000", "GBP": "52000", "JPY": "9750000", "CAD": "89000"}')
        ),
        rate_max_age_seconds=int(env("RATE_MAX_AGE_SECONDS", "300")),
        rate_timeout_seconds=float(env("RATE_TIMEOUT_SECONDS", "3")),
        kraken_url=env("KRAKEN_URL", "https://api.kraken.com"),
        coinbase_url=env("COINBASE_URL", "https://api.coinbase.com"),
        bitcoin_network=env("BITCOIN_NETWORK", "main"),
    )

"""Fixtures for the API tests: clients paired with a store, as a merchant would pair them."""

import pytest

from tests.bitid_client import BitIdClient

# For the many variations of one input where the path prefix changes nothing; one prefixed case is enough.
root_only = pytest.mark.parametrize("api_url", [""], indirect=True, ids=["root"])


@pytest.fixture
def pair(api_url, store):
    """`pair(facade)`: a new client holding an active token for `store` (a merchant-made code it claimed).

    With `signed=False` the code is claimed without a client id, so the token is used unsigned.
    """
    from chalicelib.security import tokens

    def make(facade: str = "merchant", *, store_id: str | None = None, signed: bool = True) -> BitIdClient:
        client = BitIdClient(api_url)
        code = tokens.create_pairing_code(store_id or store.store_id, facade).pairing_code
        client.token = tokens.claim(code, client.sin if signed else None).token
        return client

    return make


@pytest.fixture
def merchant(pair) -> BitIdClient:
    return pair("merchant")


@pytest.fixture
def pos(pair) -> BitIdClient:
    return pair("pos")


@pytest.fixture
def other_store(user, store):
    """A second store of the same merchant, with its own wallet."""
    from chalicelib.billing import stores
    from tests.conftest import new_wallet

    return stores.create_store(user.login, "Other shop", "EUR", wallet=new_wallet())

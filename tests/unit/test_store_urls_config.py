"""``store.url`` as a list or ``store.urls``: several servers of one MariaDB database, in order."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from telephonyd.config import Config

A = "mysql+aiomysql://td:s3cret-a@10.0.0.1:3306/telephonyd"
B = "mysql+aiomysql://td:s3cret-b@10.0.0.2:3306/telephonyd"


@pytest.mark.parametrize("store", [{"url": [A, B]}, {"urls": [A, B]}, {"url": A, "urls": [A, B]}])
def test_a_list_of_servers_in_order_with_url_the_first(store: dict) -> None:
    config = Config.model_validate({"store": store})
    assert config.store.all_urls() == [A, B]
    assert config.store.url.get_secret_value() == A


def test_one_url_is_a_list_of_one() -> None:
    assert Config.model_validate({"store": {"url": A}}).store.all_urls() == [A]


@pytest.mark.parametrize(("store", "error"), [
    ({"url": B, "urls": [A, B]}, "first of store.urls"),
    ({"urls": ["sqlite+aiosqlite:///x.db", A]}, "one MariaDB database"),
    ({"url": [A], "urls": [B]}, "not both"),
])
def test_refused(store: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Config.model_validate({"store": store})


def test_every_password_is_masked_and_known_as_a_secret() -> None:
    config = Config.model_validate({"store": {"urls": [A, B]}})
    masked = str(config.masked())
    assert "s3cret-a" not in masked and "s3cret-b" not in masked and "10.0.0.2" in masked
    assert {"s3cret-a", "s3cret-b"} <= set(config.secrets())

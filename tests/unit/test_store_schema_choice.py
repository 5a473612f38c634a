"""Which schema goes where: ps_contacts only for the contacts feature, a primary key in owned mode,
a clear refusal (not a retry loop) when the server requires a primary key (Galera error 4165)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from telephonyd.app import store_schemas
from telephonyd.config import Config
from telephonyd.errors import StoreError
from telephonyd.store.engine import start_error_retryable
from telephonyd.contacts.schema import metadata_for
from telephonyd.store.migrate import _create, ensure_schema


def _tables(config: Config) -> set[str]:
    return {name for metadata in store_schemas(config) for name in metadata.tables}


def test_ps_contacts_is_not_in_the_store_while_ami_is_disabled() -> None:
    assert "ps_contacts" not in _tables(Config())
    assert "outbox" in _tables(Config())


def test_ps_contacts_is_in_the_store_when_ami_is_enabled_and_no_ps_contacts_url() -> None:
    assert "ps_contacts" in _tables(Config.model_validate({"ami": {"enabled": True}}))
    elsewhere = Config.model_validate({"ami": {"enabled": True},
                                       "ps_contacts": {"url": "mysql+aiomysql://u@127.0.0.1/asterisk"}})
    assert "ps_contacts" not in _tables(elsewhere)


@pytest.mark.parametrize(("mode", "key"), [("owned", ["id"]), ("asterisk", [])])
def test_owned_mode_creates_ps_contacts_with_a_primary_key_asterisk_mode_as_asterisk_does(mode: str, key: list[str]) -> None:
    config = Config.model_validate({"ami": {"enabled": True}, "ps_contacts": {"mode": mode}})
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        for metadata in store_schemas(config):
            ensure_schema(conn, metadata)
        inspector = sa.inspect(conn)
        assert inspector.get_pk_constraint("ps_contacts")["constrained_columns"] == key
        assert {i["name"] for i in inspector.get_indexes("ps_contacts")} >= {"ps_contacts_id", "ps_contacts_qualifyfreq_exp"}
        # a second pass over an existing schema changes nothing
        assert all(ensure_schema(conn, metadata) == [] for metadata in store_schemas(config))


class _RefusingConnection:
    """Stands in for a MariaDB connection under wsrep_mode=REQUIRED_PRIMARY_KEY: every CREATE TABLE
    fails with error 4165 (the error MariaDB 10.11 Galera gives)."""

    def __init__(self, real: sa.Connection) -> None:
        self._real = real
        self.dialect = real.dialect

    def execute(self, statement, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        if isinstance(statement, sa.schema.CreateTable):
            raise sa.exc.OperationalError("CREATE TABLE", {}, Exception(
                4165, "Galera replication not supported"))
        return self._real.execute(statement, *args, **kwargs)


def test_error_4165_on_create_is_a_permanent_store_error_naming_ps_contacts_url() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn, pytest.raises(StoreError) as caught:
        _create(_RefusingConnection(conn), metadata_for("asterisk").tables["ps_contacts"])  # type: ignore[arg-type]
    assert not caught.value.retryable and caught.value.exit_code == 78
    assert "ps_contacts.url" in str(caught.value) and "4165" in str(caught.value)


def test_error_4165_at_start_is_not_retried() -> None:
    exc = sa.exc.OperationalError("CREATE TABLE", {}, Exception(4165, "Galera replication not supported"))
    assert start_error_retryable("mysql", exc) is False
    lost = sa.exc.OperationalError("SELECT 1", {}, Exception(2013, "Lost connection"))
    assert start_error_retryable("mysql", lost) is True

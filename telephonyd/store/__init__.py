"""The durable store: SQLAlchemy 2 Core over aiosqlite (embedded default) or aiomysql.

`Store` owns the engine, creates and upgrades every registered schema at start, and offers the few
dialect differences the edges need (insert-or-ignore, the database clock). Edges bring their own
`sqlalchemy.MetaData`; the store knows none of their tables.
"""

from .engine import Store, dialect_of
from .errors import STORE_ERRORS
from .prepared import Prepared

__all__ = ["STORE_ERRORS", "Prepared", "Store", "dialect_of"]

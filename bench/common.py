"""Small pieces shared by the benchmarks."""

from __future__ import annotations


def mysql_admin(url: str, sql: str) -> None:
    """Run one administrative statement (CREATE/DROP DATABASE) on the server of a SQLAlchemy URL."""
    import pymysql
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = pymysql.connect(host=u.host, port=u.port or 3306, user=u.username, password=u.password or "",
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()

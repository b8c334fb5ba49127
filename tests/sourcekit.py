"""Helpers for source tests: run statements in a source database, declare a source."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2
import pymysql

from dbluigi.config import load_config
from dbluigi.sources import SourceTable
from dbluigi.urls import parse_url


def is_mariadb(url: str) -> bool:
    return url.startswith(("mysql", "mariadb"))


def source_exec(url: str, *statements: str) -> None:
    """Run statements in a source database, autocommitted (MariaDB sessions in UTC)."""
    if is_mariadb(url):
        connection = _mariadb(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET time_zone = '+00:00'")
                for statement in statements:
                    cursor.execute(statement)
        finally:
            connection.close()
        return
    pg = psycopg2.connect(url)
    pg.autocommit = True
    try:
        with pg.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        pg.close()


def source_script(url: str, path: Path) -> None:
    """Run a file of statements, each ending with a semicolon at the end of a line."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("--"))
    source_exec(url, *(s for s in re.split(r";\s*$", text, flags=re.M) if s.strip()))


def source_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if is_mariadb(url):
        connection = _mariadb(url)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()
    pg = psycopg2.connect(url)
    try:
        with pg.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        pg.close()


def source_toml(url: str, tables: str = 'tables = ["items"]', *, name: str = "src") -> str:
    """A ``[sources.NAME]`` section; ``tables`` is the rest of it (short or long form)."""
    return f'[sources.{name}]\nurl = "{url}"\n{tables}\n'


def declared(root: Any, relation: str) -> SourceTable:
    """The SourceTable a project at ``root`` declares for ``relation``."""
    return load_config(root).source_tables[relation]


def _mariadb(url: str) -> pymysql.connections.Connection:
    parsed = parse_url(url)
    return pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        autocommit=True,
        charset="utf8mb4",
    )


def create_items(url: str, rows: Sequence[tuple[int, str, str]] = ()) -> None:
    """A small ``items`` table (id, status, updated_at) in a source, with ``rows``."""
    stamp = "datetime" if is_mariadb(url) else "timestamp"
    source_exec(
        url, f"create table items (id integer primary key, status varchar(20), updated_at {stamp})"
    )
    if rows:
        source_insert(url, "insert into items values (%s, %s, %s)", rows)


def source_insert(url: str, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run one statement of ``%s`` parameters once per row."""
    connection: Any = _mariadb(url) if is_mariadb(url) else psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.executemany(sql, [tuple(row) for row in rows])
        connection.commit()
    finally:
        connection.close()

"""Target URLs read without SQLAlchemy give what SQLAlchemy's make_url gives."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dbluigi.urls import libpq_dsn, parse_url

pytestmark = pytest.mark.unit

URLS = [
    "postgresql://root@127.0.0.1:5432/test",
    "postgresql+psycopg2://etl:s3cret@db.example.com/warehouse",
    "postgres://u:p%40ss%3Aword@host/db",
    "postgresql://ada:s3@cret@db/x",  # an unencoded @ in the password
    "postgresql://user@[::1]:5433/db",
    "postgresql://host/db?sslmode=require&connect_timeout=5",
    "postgresql://host/db?options=-c%20search_path%3Dx&a=1&a=2",
    "postgresql://host/db?password=secret&blank=",
    "postgresql://host",
    "postgresql://host/",
    "postgresql:///db?host=/var/run/postgresql",
    "postgresql://:pw@host/db",
    "postgresql://%C3%BCser@host/d%C3%A9b",
    "duckdb:///relative/file.duckdb",
    "duckdb:////absolute/file.duckdb",
    "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
]


@pytest.mark.parametrize("url", URLS)
def test_parse_url_reads_what_sqlalchemy_reads(url: str) -> None:
    ours, theirs = parse_url(url), make_url(url)
    assert ours.drivername == theirs.drivername
    assert ours.username == theirs.username
    assert ours.password == theirs.password
    assert ours.host == theirs.host
    assert ours.port == theirs.port
    assert ours.database == theirs.database
    assert dict(ours.query) == dict(theirs.query)


@pytest.mark.parametrize("url", ["not a url", "postgresql://host:port/db", "://host/db", ""])
def test_parse_url_refuses_what_sqlalchemy_refuses(url: str) -> None:
    with pytest.raises((ArgumentError, ValueError)):
        make_url(url)
    with pytest.raises(ValueError):
        parse_url(url)


def test_libpq_dsn_keeps_the_rest_as_written() -> None:
    url = "postgresql+psycopg2://u:p%40ss@h:5432/db?sslmode=require"
    assert libpq_dsn(url) == (
        "postgresql://u:p%40ss@h:5432/db?sslmode=require",
        {"connect_timeout": 10},
    )
    assert libpq_dsn("postgres://h/db?connect_timeout=3") == (
        "postgres://h/db?connect_timeout=3",
        {},
    )


@pytest.mark.parametrize("url", URLS)
def test_a_rendered_url_reads_back_the_same(url: str) -> None:
    assert parse_url(parse_url(url).render()) == parse_url(url)

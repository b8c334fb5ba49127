"""Database URLs (targets and sources), read as SQLAlchemy reads them, without importing it.

``driver[+dbapi]://user:password@host:port/database?key=value``: user and password are
percent-decoded (the database too), an IPv6 host is written in brackets, the database is
everything after the first ``/`` (``duckdb:////abs/path`` gives ``/abs/path``). Every command reads the
target URL, and importing SQLAlchemy for it cost 0.13 s of each one; tests hold this
reading equal to SQLAlchemy's ``make_url``. ``mask_url`` is how a URL is shown
anywhere (messages, logs, audit rows): its password replaced by ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode

_URL = re.compile(
    r"""
    (?P<drivername>[\w+]+)://
    (?:(?P<username>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:
        (?:\[(?P<ipv6host>[^/?]+)\]|(?P<ipv4host>[^/:?]+))?
        (?::(?P<port>[^/?]*))?
    )?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)
# a query parameter whose value is a secret: ``password``, libpq's ``sslpassword``, a
# driver's ``passwd``, ``pwd``, ``secret``, ``token``, ``access_token``, ``api_key``...
# (a path named so, libpq's ``sslkey``, is masked too: harmless)
_QUERY_PASSWORD_RE = re.compile(
    r"([?&][\w.-]*(?:password|passwd|pwd|secret|token|key)=)[^&]*", re.IGNORECASE
)


@dataclass(frozen=True)
class DatabaseURL:
    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: Mapping[str, str | tuple[str, ...]]

    def render(self) -> str:
        """The URL again, password included (``parse_url`` reads it back the same); with
        ``dataclasses.replace``, another database on the same server."""
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="")
            if self.password is not None:
                user += ":" + quote(self.password, safe="")
            user += "@"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host or ""
        port = f":{self.port}" if self.port is not None else ""
        database = f"/{quote(self.database, safe='/')}" if self.database is not None else ""
        query = urlencode(list(self.query.items()), doseq=True, quote_via=quote)
        return f"{self.drivername}://{user}{host}{port}{database}{'?' + query if query else ''}"


def parse_url(url: str) -> DatabaseURL:
    """The parts of ``url``; ValueError when it is not a database URL."""
    match = _URL.fullmatch(url.strip())
    if match is None:
        raise ValueError(f"could not parse a database URL from {url!r}")
    parts = match.groupdict()
    port = parts["port"]
    if port:
        try:
            number = int(port)
        except ValueError:
            raise ValueError(f"the port {port!r} is not a number") from None
    query: dict[str, str | tuple[str, ...]] = {}
    for key, value in parse_qsl(parts["query"] or ""):
        present = query.get(key)
        if present is None:
            query[key] = value
        else:
            query[key] = (*(present if isinstance(present, tuple) else (present,)), value)
    return DatabaseURL(
        drivername=parts["drivername"],
        username=unquote(parts["username"]) if parts["username"] is not None else None,
        password=unquote(parts["password"]) if parts["password"] is not None else None,
        host=parts["ipv6host"] or parts["ipv4host"],
        port=number if port else None,
        database=unquote(parts["database"]) if parts["database"] is not None else None,
        query=query,
    )


def libpq_dsn(url: str, *, connect_timeout: int = 10) -> tuple[str, dict[str, int]]:
    """What psycopg2.connect takes for a PostgreSQL URL: the URL with a plain
    ``postgresql://`` scheme (libpq knows no ``+psycopg2``), and a connect timeout
    unless the URL sets one."""
    parsed = parse_url(url)
    url = url.strip()
    dsn = "postgresql" + url[url.index("://") :] if "+" in parsed.drivername else url
    timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": connect_timeout}
    return dsn, timeout


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``; never raises."""
    return _mask_by_hand(str(url))


def _mask_by_hand(url: str) -> str:
    """Mask ``scheme://user:password@...`` and ``?password=`` without parsing; the
    password ends at the last ``@`` before the query string, since an unencoded ``@``
    may sit inside it."""
    url = _QUERY_PASSWORD_RE.sub(r"\1***", url)
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    query_at = rest.find("?")
    at = rest.rfind("@", 0, query_at if query_at >= 0 else len(rest))
    if at < 0 or ":" not in rest[:at]:
        return url
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}://{user}:***{rest[at:]}"

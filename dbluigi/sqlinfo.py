"""What a SQL file reads, writes and is, inferred with sqlglot.

``analyze_sql`` splits a file into statements with the dialect's tokenizer, parses
each statement once, and walks it scope by scope
(``sqlglot.optimizer.scope.traverse_scope``), so CTE names, subquery aliases and
table functions are never taken for tables. The result is a ``SqlInfo``: the
statements with their kinds and lines, the tables the file reads, creates and
modifies, the tables its foreign keys reference, the routines it defines and calls
and the schemas it creates, all named the way the database resolves them (unquoted
names folded per dialect, the catalog part dropped). Temporary tables, views and
macros live for one session: they are nobody's relation and appear nowhere.

With ``as_written=True`` (a model whose header lists its dependencies), a statement
sqlglot cannot parse does not fail the file: it is kept as written, marked
``Statement.unparsed``, with a kind guessed from its first words, and nothing is
inferred from it.

``replace_relations`` rewrites table references in SQL, e.g. to point a patch or a
check at the freshly built ``<name>__dbluigi_new`` table.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.tokens import Token, Tokenizer, TokenType

from dbluigi.errors import SqlParseError
from dbluigi.sqltypes import SqlInfo, Statement, TableRef, Unparsed

STATEMENT_KINDS = (
    "query",
    "insert",
    "update",
    "delete",
    "merge",
    "create_table",
    "create_view",
    "create_index",
    "create_function",
    "create_procedure",
    "create_schema",
    "alter",
    "truncate",
    "drop",
    "other",
)

_CREATE_KINDS = {
    "TABLE": "create_table",
    "VIEW": "create_view",
    "INDEX": "create_index",
    "FUNCTION": "create_function",
    "MACRO": "create_function",
    "PROCEDURE": "create_procedure",
    "SCHEMA": "create_schema",
}
_SIMPLE_KINDS: dict[type[exp.Expr], str] = {
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Merge: "merge",
    exp.Alter: "alter",
    exp.TruncateTable: "truncate",
    exp.Drop: "drop",
}
# What sqlglot keeps as an opaque Command can still be recognisably a CREATE FUNCTION.
_COMMAND_CREATE = re.compile(
    r"\s*(?:or\s+replace\s+)?(?P<temporary>(?:temp|temporary)\s+)?"
    r"(?P<what>function|macro|procedure)\b",
    re.IGNORECASE,
)
# The routine an opaque CREATE FUNCTION or CALL names: everything before its argument list.
_ROUTINE_NAME = re.compile(r"\s*([^(]+?)\s*\(")
# DuckDB reads files named in FROM ('data.csv', 's3://...'); sqlglot makes them quoted tables.
_FILE_LIKE = re.compile(
    r"[/\\*]|://|\.(csv|tsv|txt|json|jsonl|ndjson|parquet|arrow|xlsx|db|duckdb)(\.\w+)?$",
    re.IGNORECASE,
)
_OPENS_BLOCK = (TokenType.BEGIN, TokenType.CASE)
_CLASS_REPR = re.compile(r"<class '(?:\w+\.)*(\w+)'>")
_TOKEN_REPR = re.compile(r"<Token token_type: [\w.]+, text: (.*?), line: .*?>")
_TOKENIZER_MISSING = re.compile(r"Missing (.+) from \d+:(\d+)")
_HINT = (
    "dbluigi reads SQL with sqlglot (dialect {dialect}); if this is valid SQL for your "
    "database, declare what the file depends on in a -- depends: header and dbluigi runs "
    "it as written, inferring nothing from it"
)
_TOKEN_HINT = (
    "dbluigi splits files into statements with sqlglot's tokenizer (dialect {dialect}); "
    "look for an unclosed quote, comment or $$ body"
)
# A statement sqlglot cannot parse that starts with one of these is taken for a query.
_QUERY_STARTS = {TokenType.SELECT, TokenType.WITH, TokenType.VALUES, TokenType.L_PAREN}
_DML = {TokenType.INSERT, TokenType.UPDATE, TokenType.DELETE, TokenType.MERGE}
_E = TypeVar("_E", bound=exp.Expr)


def analyze_sql(
    text: str,
    *,
    dialect: str,
    path: str,
    line_offset: int = 0,
    as_written: bool = False,
    hint: str | None = None,
) -> SqlInfo:
    """Split, parse and analyze a file's SQL; raises SqlParseError naming the file line.

    ``as_written``: a statement sqlglot cannot parse or analyze is kept as an unparsed
    statement instead (the file's dependencies are declared); a statement that cannot
    be split off (an unclosed quote) is an error all the same. ``hint`` replaces the
    error's advice for a statement that does not parse (declare ``-- depends:``)."""
    d = _dialect(dialect)
    hint = hint or _HINT.format(dialect=dialect)
    parser = d.parser()
    statements: list[Statement] = []
    reads: set[TableRef] = set()
    creates: set[TableRef] = set()  # also what reading later is no input
    modifies: set[TableRef] = set()
    references: set[TableRef] = set()
    routines: dict[str, set[TableRef]] = {"defines": set(), "temporary": set(), "calls": set()}
    schemas: set[str] = set()
    write_lines: dict[TableRef, int] = {}
    temporary: set[TableRef] = set()  # session tables are nobody's relation

    for chunk in _chunks(text, dialect, path, line_offset):
        try:
            tree = parser.parse(chunk.tokens, text)[0]
        except ParseError as e:
            error = _parse_error(e, hint, path, line_offset, chunk.line)
            if not as_written:
                raise error from None
            statements.append(_unparsed(chunk, error.line or chunk.line, _describe(e)))
            continue
        kind = _kind(tree) if tree is not None else "other"
        if tree is None or _opaque(tree, kind):
            statements.append(Statement(chunk.sql, chunk.line, kind))
            routine = _routine_of_opaque(tree, kind, d) if tree is not None else None
            if routine:
                routines[routine[0]].add(routine[1])
            continue
        _normalize_names(tree, d)
        try:
            read_nodes, create_nodes, modify_nodes = _relations(tree, kind)
        except SqlglotError as e:
            if not as_written:
                raise SqlParseError(
                    f"cannot analyze SQL: {e}", path=path, line=chunk.line, hint=hint
                ) from None
            statements.append(_unparsed(chunk, chunk.line, f"cannot analyze it: {e}"))
            continue
        statements.append(Statement(chunk.sql, chunk.line, kind))
        made = {_ref(t) for t in create_nodes} - temporary
        changed = {_ref(t) for t in modify_nodes} - temporary
        if (kind in ("create_table", "create_view") and _is_temporary(tree)) or (
            isinstance(tree, exp.Alter)  # a temporary table renamed is still temporary
            and isinstance(tree.this, exp.Table)
            and _ref(tree.this) in temporary
        ):
            temporary |= made
            made = set()
        own = made | changed
        reads |= {_ref(t) for t in read_nodes} - own - creates - temporary
        if kind in ("create_table", "alter"):  # the statements that can hold REFERENCES
            references |= {_ref(t) for t in _referenced(tree)} - own - creates - temporary
        routines["calls"] |= _calls(tree, d)
        if kind == "create_schema" and isinstance(tree.this, exp.Table) and tree.this.db:
            schemas.add(tree.this.db)
        creates |= made
        modifies |= changed
        for ref in sorted(own, key=_key):
            write_lines.setdefault(ref, _code_line(chunk))

    modifies -= creates
    return SqlInfo(
        statements=tuple(statements),
        reads=_sorted(reads),
        writes=_sorted(creates | modifies),
        creates=_sorted(creates),
        modifies=_sorted(modifies),
        references=_sorted(references - creates),
        defines=_sorted(routines["defines"]),
        calls=_sorted(routines["calls"] - routines["defines"] - routines["temporary"]),
        schemas=tuple(sorted(schemas)),
        write_lines=tuple(write_lines.items()),
    )


def split_statements(
    text: str, *, dialect: str, path: str, line_offset: int = 0
) -> list[tuple[str, int]]:
    """The statements of ``text`` as original slices with their 1-based first lines."""
    return [(c.sql, c.line) for c in _chunks(text, dialect, path, line_offset)]


def replace_relations(
    sql: str,
    mapping: Mapping[TableRef, TableRef],
    *,
    dialect: str,
    schemas: Mapping[str, str] | None = None,
) -> str:
    """Point the table references of ``sql`` named in ``mapping`` at other tables, and
    the CREATE SCHEMA and DROP SCHEMA statements of a schema in ``schemas`` at the one it
    maps to (names as the database folds them).

    CTE names are left alone. A replaced table that had no alias gets its old name as
    alias, so ``name.column`` references keep binding.
    """
    d = _dialect(dialect)
    try:
        trees = [tree for tree in d.parse(sql) if tree is not None]
    except (ParseError, TokenError) as e:
        raise SqlParseError(f"cannot parse SQL: {_describe(e)}") from None
    out = []
    for tree in trees:
        if schemas:
            _move_schema(tree, schemas, d)
        kind = _kind(tree)
        if not _opaque(tree, kind):
            # Analyze a normalized copy so names match the mapping, and rewrite the original
            # so the output keeps the author's spelling; a copy walks in the same order.
            normalized = _normalize_names(tree.copy(), d)
            nodes = [node for found in _relations(normalized, kind) for node in found]
            wanted = {id(t) for t in nodes if _ref(t) in mapping}
            targets = [
                (original, _ref(copy))
                for copy, original in zip(normalized.walk(), tree.walk(), strict=True)
                if id(copy) in wanted
                and isinstance(copy, exp.Table)
                and isinstance(original, exp.Table)
            ]
            for original, ref in targets:
                _point_at(original, mapping[ref], d)
            if targets:
                _unqualify_columns(tree, {(r.schema, r.name) for _, r in targets if r.schema})
        out.append(tree.sql(dialect=d))
    return ";\n".join(out)


def _move_schema(tree: exp.Expr, schemas: Mapping[str, str], d: Dialect) -> None:
    """Point a CREATE SCHEMA or DROP SCHEMA statement at the schema ``schemas`` maps its
    schema to, when it does."""
    if not isinstance(tree, exp.Create | exp.Drop):
        return
    if str(tree.args.get("kind") or "").upper() != "SCHEMA":
        return
    named = tree.args.get("tables") or [tree.this]  # DROP SCHEMA a, b
    for table in named:
        schema = table.args.get("db") if isinstance(table, exp.Table) else None
        if not isinstance(schema, exp.Identifier):
            continue
        moved = schemas.get(d.normalize_identifier(schema.copy()).name)
        if moved is not None:
            table.set("db", exp.to_identifier(moved))


def move_by_tokens(
    sql: str,
    relations: Mapping[tuple[str, str], str],
    schemas: Mapping[str, str],
    *,
    dialect: str,
) -> str:
    """Move the names of a statement that sqlglot keeps as a command or cannot parse (so
    ``replace_relations`` leaves it as written), token by token:

    - ``schema.name`` of a relation in ``relations`` (``(schema, name)`` -> the schema the
      target builds it in), in a name of two parts or more (``db.s.t``, ``s.t.column``);
    - a schema in ``schemas`` named after ``SCHEMA`` (``CREATE SCHEMA a AUTHORIZATION u``,
      ``ALTER SCHEMA a``, ``GRANT ... ON SCHEMA a, b``, ``SET SCHEMA a``);
    - both inside a dollar-quoted block that runs as SQL (``DO $$ ... $$``, ``EXECUTE
      $q$ ... $q$``); any other dollar-quoted string is a string.

    A routine's definition is left as written, body and all: routines keep the schema
    they are written in, and a body moved under a name that is not would change the
    routine another target uses. Names compare as the database folds them (unquoted: any
    case; quoted: exactly on PostgreSQL, in any case on DuckDB). Strings and comments are left alone, and so is SQL the
    tokenizer cannot read."""
    try:
        tokens = _word_tokenizer(dialect)().tokenize(sql)
    except TokenError:
        return sql
    if tokens and tokens[0].token_type is TokenType.CREATE:
        defined = [t.text.lower() for t in tokens[1:4]]
        if {"function", "procedure", "macro"} & set(defined):
            return sql
    edits: list[tuple[int, int, str]] = []  # (start, end inclusive, text)
    # DuckDB compares even quoted names in any case; PostgreSQL a quoted name exactly
    any_case = _dialect(dialect).NORMALIZATION_STRATEGY is NormalizationStrategy.CASE_INSENSITIVE

    def folded(token: Token) -> str | None:
        if token.token_type is TokenType.IDENTIFIER:
            return token.text.lower() if any_case else token.text
        # a word as written: a string's text ('audit') is no name
        return token.text.lower() if _WORD.fullmatch(sql, token.start, token.end + 1) else None

    def moved(token: Token, to: str) -> None:
        # quoted as it was, or where the new name needs it
        quoted = True if token.token_type is TokenType.IDENTIFIER else None
        edits.append((token.start, token.end, exp.to_identifier(to, quoted).sql(dialect=dialect)))

    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.token_type is TokenType.HEREDOC_STRING and _runs(tokens[max(0, i - 3) : i]):
            quote = _DOLLAR_QUOTE.match(sql, token.start)
            if quote is not None:
                body = sql[quote.end() : token.end + 1 - len(quote.group(0))]
                inner = move_by_tokens(body, relations, schemas, dialect=dialect)
                if inner != body:
                    edits.append((token.start, token.end, quote.group(0) + inner + quote.group(0)))
        elif token.token_type is TokenType.SCHEMA:
            j = i + 1
            while j < len(tokens) and tokens[j].text.lower() in ("if", "not", "exists"):
                j += 1
            while j < len(tokens):  # a, b, c
                name = folded(tokens[j])
                if name is not None and name in schemas:
                    moved(tokens[j], schemas[name])
                if j + 1 >= len(tokens) or tokens[j + 1].token_type is not TokenType.COMMA:
                    break
                j += 2
            i = j
        elif folded(token) is not None:  # a name of several parts: its relation, if moved
            j, parts = i, [token]
            while (
                j + 2 < len(tokens)
                and tokens[j + 1].token_type is TokenType.DOT
                and folded(tokens[j + 2]) is not None
            ):
                j += 2
                parts.append(tokens[j])
            for schema, relation in itertools.pairwise(parts):
                to = relations.get((folded(schema) or "", folded(relation) or ""))
                if to is not None:
                    moved(schema, to)
                    break
            i = j + 1
            continue
        i += 1
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end + 1 :]
    return sql


@functools.cache
def _word_tokenizer(dialect: str) -> Callable[[], Tokenizer]:
    """The dialect's tokenizer without its commands: sqlglot's reads a statement that
    starts with one (``DO``, ``LOCK``, ``REFRESH``, ``VACUUM``, ``EXECUTE``...) as that
    word and the rest as one string, whose names it hides."""
    d = _dialect(dialect)
    tokenizer = d.tokenizer_class
    return functools.partial(
        type(f"{tokenizer.__name__}Words", (tokenizer,), {"COMMANDS": set()}), dialect=d
    )


def _runs(before: list[Token]) -> bool:
    """Whether a dollar-quoted string after the tokens ``before`` runs as SQL: the block
    of ``DO`` (``DO LANGUAGE plpgsql``), the statement of ``EXECUTE``; any other is a
    string."""
    words = [t.text.lower() for t in before]
    return words[-1:] in (["do"], ["execute"], ["exec"]) or words[-3:-1] == ["do", "language"]


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class _Chunk:
    sql: str
    line: int
    tokens: list[Token]


def _code_line(chunk: _Chunk) -> int:
    """The line where a statement's code starts, after the comments that lead it."""
    offset = 0
    for text in chunk.sql.splitlines():
        stripped = text.strip()
        if stripped and not stripped.startswith("--"):
            break
        offset += 1
    return chunk.line + offset


def _unparsed(chunk: _Chunk, line: int, reason: str) -> Statement:
    """A statement kept as written, its kind guessed from its first word."""
    first = chunk.tokens[0].token_type
    kind = "query" if first in _QUERY_STARTS else "other"
    if first is TokenType.WITH:  # WITH ... INSERT / UPDATE / DELETE / MERGE changes a table
        depth = 0
        for token in chunk.tokens:
            depth += (token.token_type is TokenType.L_PAREN) - (
                token.token_type is TokenType.R_PAREN
            )
            if depth == 0 and token.token_type in _DML:
                kind = "other"
                break
    return Statement(chunk.sql, chunk.line, kind, Unparsed(line, reason))


@functools.cache
def _dialect(name: str) -> Dialect:
    return Dialect.get_or_raise(name)


def _chunks(text: str, dialect: str, path: str, line_offset: int) -> list[_Chunk]:
    """Cut the tokens at top-level semicolons; the tokenizer knows strings, comments, $$."""
    try:
        tokens = _dialect(dialect).tokenize(text)
    except TokenError as e:
        raise _token_error(e, text, dialect, path, line_offset) from None

    # Statements end at semicolons, except inside a PostgreSQL BEGIN ATOMIC ... END body.
    pieces: list[tuple[list[Token], Token | None]] = []  # tokens, and the semicolon ending them
    current: list[Token] = []
    atomic = 0  # block depth inside BEGIN ATOMIC
    previous: TokenType | None = None
    for token in tokens:
        kind = token.token_type
        if atomic:
            atomic += (kind in _OPENS_BLOCK) - (kind is TokenType.END)
        elif kind is TokenType.SEMICOLON:
            pieces.append((current, token))
            current, previous = [], kind
            continue
        elif previous is TokenType.BEGIN and token.text.upper() == "ATOMIC":
            atomic = 1
        current.append(token)
        previous = kind
    pieces.append((current, None))

    chunks: list[_Chunk] = []
    start = 0  # where the next statement's text, leading comments included, begins
    line = 1  # the line of ``start``, counted as we go
    counted = 0
    for statement_tokens, semicolon in pieces:
        end = semicolon.start if semicolon else len(text)
        if statement_tokens:
            begin = start + len(text[start:end]) - len(text[start:end].lstrip())
            line += text.count("\n", counted, begin)
            counted = begin
            chunks.append(_Chunk(text[begin:end].rstrip(), line + line_offset, statement_tokens))
        if semicolon:
            start = _after_trailing_comment(text, semicolon.end + 1)
    return chunks


def _after_trailing_comment(text: str, pos: int) -> int:
    """Where the next statement starts: a `-- note` after a semicolon belongs to its line."""
    newline = text.find("\n", pos)
    if newline == -1:
        return pos
    rest = text[pos:newline].strip()
    if not rest or rest.startswith(("--", "#")):
        return newline + 1
    return pos


def _kind(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Select) and tree.args.get("into"):
        return "create_table"  # SELECT ... INTO new_table
    if isinstance(tree, (exp.Query, exp.Values, exp.Pivot)):
        return "query"
    simple = _SIMPLE_KINDS.get(type(tree))
    if simple:
        return simple
    if isinstance(tree, exp.Create):
        return _CREATE_KINDS.get(str(tree.args.get("kind") or "").upper(), "other")
    if isinstance(tree, exp.Command) and str(tree.this).upper() == "CREATE":
        match = _COMMAND_CREATE.match(str(tree.expression or ""))
        if match:
            return _CREATE_KINDS[match.group("what").upper()]
    return "other"


def _normalize_names(tree: _E, d: Dialect) -> _E:
    """Fold table, alias and CTE names the way the database does, before scoping matches them.

    Only these names decide what is a table; leaving column names alone saves a third of
    the cost of ``normalize_identifiers``.
    """
    for node in tree.find_all(exp.Table, exp.TableAlias):
        for part in node.args.values():
            if type(part) is exp.Identifier:
                d.normalize_identifier(part)
    return tree


def _opaque(tree: exp.Expr, kind: str) -> bool:
    """Commands sqlglot could not parse, and function bodies that only run later."""
    return isinstance(tree, exp.Command) or kind in ("create_function", "create_procedure")


def _relations(
    tree: exp.Expr, kind: str
) -> tuple[list[exp.Table], list[exp.Table], list[exp.Table]]:
    """The table nodes a (normalized) statement reads, creates and modifies."""
    reads: list[exp.Table] = []
    # sqlglot gives a CTE scope only to queries; PostgreSQL's data-modifying CTEs
    # (WITH d AS (DELETE ... RETURNING *) ...) are names all the same
    with_ = tree.args.get("with_")
    dml_ctes = (
        {c.alias for c in with_.expressions if not isinstance(c.this, exp.Query)}
        if with_
        else set()
    )
    scopes = traverse_scope(tree)
    for scope in scopes:
        for source in scope.sources.values():
            if (
                isinstance(source, exp.Table)
                and _is_relation(source)
                # a pivoted CTE reference comes back as its Table node
                and (
                    source.args.get("db")
                    or (source.name not in scope.cte_sources and source.name not in dml_ctes)
                )
            ):
                reads.append(source)
    if not scopes and kind == "query":  # VALUES, DuckDB's PIVOT statement
        reads.extend(t for t in tree.find_all(exp.Table) if _is_relation(t))

    creates: list[exp.Table] = []
    modifies: list[exp.Table] = []
    for target, created in _targets(tree):
        if isinstance(target, exp.Schema):  # CREATE TABLE t (a int), INSERT INTO t (a)
            target = target.this
        if isinstance(target, exp.Table) and _is_relation(target):
            (creates if created else modifies).append(target)

    if isinstance(tree, (exp.Update, exp.Delete)) and isinstance(tree.this, exp.Table):
        # MySQL: UPDATE t JOIN s ON ... SET / DELETE t FROM t JOIN s
        for join in tree.this.args.get("joins") or []:
            reads.extend(t for t in join.find_all(exp.Table) if _is_relation(t))
    if (
        isinstance(tree, exp.Copy)
        and not tree.args.get("kind")
        and isinstance(tree.this, exp.Table)
    ):
        reads.append(tree.this)  # COPY t TO 'file'
    return reads, creates, modifies


def _targets(tree: exp.Expr) -> Iterator[tuple[exp.Expr | None, bool]]:
    """The tables a statement changes, creates or drops, each with True when it creates it."""
    if isinstance(tree, (exp.Insert, exp.Update, exp.Merge)):
        yield tree.this, False
    elif isinstance(tree, exp.Delete):
        for table in tree.args.get("tables") or [tree.this]:
            yield table, False
    elif isinstance(tree, exp.Create):
        kind = str(tree.args.get("kind") or "").upper()
        if kind in ("TABLE", "VIEW"):
            yield tree.this, True
        elif kind == "INDEX" and isinstance(tree.this, exp.Index):
            yield tree.this.args.get("table"), False
    elif isinstance(tree, exp.Alter):
        if str(tree.args.get("kind") or "").upper() in ("TABLE", "VIEW"):
            yield tree.this, False
            for action in tree.args.get("actions") or []:
                if isinstance(action, exp.AlterRename) and isinstance(tree.this, exp.Table):
                    yield _renamed(tree.this, action.this), True
    elif isinstance(tree, exp.TruncateTable):
        for table in tree.expressions:
            yield table, False
    elif isinstance(tree, exp.Drop):
        if str(tree.args.get("kind") or "").upper() in ("TABLE", "VIEW"):
            for table in tree.args.get("tables") or [tree.this]:
                yield table, False
    elif isinstance(tree, exp.Select) and tree.args.get("into"):
        yield tree.args["into"].this, True
    elif isinstance(tree, exp.Copy) and tree.args.get("kind"):
        yield tree.this, False  # COPY t FROM 'file'
    with_ = tree.args.get("with_")
    if with_:  # PostgreSQL's data-modifying CTEs: WITH d AS (DELETE FROM t RETURNING *) ...
        for cte in with_.expressions:
            if isinstance(cte.this, exp.DML) and not isinstance(cte.this, exp.Copy):
                yield from _targets(cte.this)


def _referenced(tree: exp.Expr) -> Iterator[exp.Table]:
    """The tables a (normalized) table definition's foreign keys name in REFERENCES."""
    for reference in tree.find_all(exp.Reference):
        table = reference.this.this if isinstance(reference.this, exp.Schema) else reference.this
        if isinstance(table, exp.Table) and _is_relation(table):
            yield table


def _calls(tree: exp.Expr, d: Dialect) -> set[TableRef]:
    """The functions a statement calls that sqlglot does not know (``exp.Anonymous``)."""
    calls = set()
    for call in tree.find_all(exp.Anonymous):
        schema = None
        parent = call.parent
        if isinstance(parent, exp.Dot) and parent.expression is call:
            qualifier = parent.this  # schema.f(x), or catalog.schema.f(x)
            if isinstance(qualifier, exp.Dot) and isinstance(qualifier.this, exp.Identifier):
                qualifier = qualifier.expression
            # deeper or parenthesized, it is DuckDB's method call on a column: (t.col).f()
            if isinstance(qualifier, exp.Identifier):
                schema = _folded(qualifier, d)
        elif isinstance(parent, exp.Table) and call.arg_key == "this" and parent.args.get("db"):
            schema = parent.db  # a table function: FROM stg.rows_of(1), already folded
        calls.add(TableRef(schema, _folded(call.this, d)))
    return calls


def _folded(name: exp.Expr | str, d: Dialect) -> str:
    """A function or schema name as the database resolves it."""
    if isinstance(name, exp.Identifier):
        return d.normalize_identifier(name.copy()).name
    return d.normalize_identifier(exp.Identifier(this=str(name), quoted=False)).name


def _routine_of_opaque(tree: exp.Expr, kind: str, d: Dialect) -> tuple[str, TableRef] | None:
    """What an opaque statement does with a routine: ``("defines", f)`` for CREATE
    FUNCTION/PROCEDURE/MACRO, ``("temporary", f)`` for a temporary one (it lives for the
    session), ``("calls", p)`` for CALL p(...); None for anything else."""
    if kind in ("create_function", "create_procedure"):
        if isinstance(tree, exp.Create):
            udf = tree.this
            name = udf.this if isinstance(udf, exp.UserDefinedFunction) else udf
            if not isinstance(name, exp.Table):
                return None
            defined = _ref(_normalize_names(name.copy(), d))
            return ("temporary" if _is_temporary(tree) else "defines"), defined
        match = _COMMAND_CREATE.match(str(tree.expression or ""))
        named = _routine_named(str(tree.expression)[match.end() :], d) if match else None
        if match is None or named is None:
            return None
        return ("temporary" if match.group("temporary") else "defines"), named
    if isinstance(tree, exp.Command) and str(tree.this).upper() == "CALL":
        called = _routine_named(tree.expression.name, d)
        return ("calls", called) if called else None
    return None


def _routine_named(text: str, d: Dialect) -> TableRef | None:
    """The routine named at the start of ``text`` (``s.f(a int) returns ...``), if any."""
    match = _ROUTINE_NAME.match(text)
    if match is None:
        return None
    try:
        table = exp.to_table(match.group(1), dialect=d)
    except SqlglotError:
        return None
    if table.alias or not _is_relation(table):
        return None
    return _ref(_normalize_names(table, d))


def _renamed(old: exp.Table, new: exp.Expr | None) -> exp.Table | None:
    """ALTER TABLE s.t RENAME TO u creates s.u (a detached node, never rewritten)."""
    if not isinstance(new, exp.Table):
        return None
    db = new.args.get("db") or old.args.get("db")
    return exp.Table(this=new.this.copy(), db=db.copy() if db else None)


def _is_relation(table: exp.Table) -> bool:
    """A named table, not a table function (range(5), read_csv(...)) nor a file."""
    name = table.this
    if not isinstance(name, exp.Identifier) or not name.this:
        return False
    return not (name.quoted and not table.args.get("db") and _FILE_LIKE.search(name.this))


def _is_temporary(tree: exp.Expr) -> bool:
    if isinstance(tree, exp.Select):
        return bool(tree.args["into"].args.get("temporary"))
    properties = tree.args.get("properties")
    return bool(properties and properties.find(exp.TemporaryProperty))


def _ref(table: exp.Table) -> TableRef:
    return TableRef(table.db or None, table.name)


def _key(ref: TableRef) -> tuple[str, str]:
    return (ref.schema or "", ref.name)


def _sorted(refs: set[TableRef]) -> tuple[TableRef, ...]:
    return tuple(sorted(refs, key=_key))


def _point_at(table: exp.Table, ref: TableRef, d: Dialect) -> None:
    """Rename ``table`` in place to ``ref``, keeping ``old_name.column`` references bound."""
    old_name = table.this
    old_db = table.args.get("db")
    table.set("catalog", None)
    table.set("db", _identifier(ref.schema, d, old_db) if ref.schema else None)
    table.set("this", _identifier(ref.name, d, old_name))
    if not table.alias and _accepts_alias(table) and old_name.name != ref.name:
        table.set("alias", exp.TableAlias(this=old_name.copy()))


def _unqualify_columns(tree: exp.Expr, moved: set[tuple[str | None, str]]) -> None:
    """``schema.table.column`` of a moved table becomes ``table.column``: the moved table
    keeps its old name as alias, and an alias cannot be schema-qualified."""
    for column in tree.find_all(exp.Column):
        if column.args.get("db") is not None and (column.db.lower(), column.table.lower()) in moved:
            column.set("db", None)
            column.set("catalog", None)


def _identifier(name: str, d: Dialect, like: exp.Expr | None) -> exp.Identifier:
    quoted = bool(isinstance(like, exp.Identifier) and like.quoted)
    ident = exp.to_identifier(name)
    ident.set("quoted", ident.quoted or quoted or d.case_sensitive(name))
    return ident


def _accepts_alias(table: exp.Table) -> bool:
    """FROM/JOIN/USING sources and UPDATE/DELETE/MERGE targets take an alias; DDL does not."""
    parent = table.parent
    if isinstance(parent, (exp.From, exp.Join, exp.Update, exp.Merge)):
        return True
    return isinstance(parent, exp.Delete) and table.arg_key != "tables"


def _parse_error(
    e: ParseError, hint: str, path: str, line_offset: int, statement_line: int
) -> SqlParseError:
    error = e.errors[0] if e.errors else {}
    # Tokens carry lines counted in the whole text, so only the offset is added.
    line = error.get("line")
    line = max(line + line_offset, statement_line) if line else statement_line
    return SqlParseError(
        f"cannot parse SQL: {_describe(e)}",
        path=path,
        line=line,
        hint=hint,
    )


def _describe(e: SqlglotError) -> str:
    if isinstance(e, ParseError) and e.errors:
        description = e.errors[0].get("description") or "invalid syntax"
        # sqlglot names its classes and tokens in Python's words; keep the SQL's
        description = _CLASS_REPR.sub(r"\1", description)
        description = _TOKEN_REPR.sub(r"'\1'", description)
        highlight = (e.errors[0].get("highlight") or "").strip()
        return f"{description} near '{highlight}'" if highlight else description
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _token_error(
    e: TokenError, text: str, dialect: str, path: str, line_offset: int
) -> SqlParseError:
    # what the tokenizer stumbled on: its cause (sqlglot's compiled build, sqlglotc, keeps
    # it only as the context)
    cause = e.__cause__ or e.__context__
    missing = _TOKENIZER_MISSING.match(str(cause or ""))
    if missing:
        delimiter, offset = missing.group(1), int(missing.group(2))
        message = f"cannot parse SQL: {delimiter} opened here is never closed"
    else:
        # The tokenizer quotes 50 characters either side of where it stopped.
        if e.start:
            offset = e.start + 50
        elif e.end is not None and e.end < len(text) - 1:
            offset = e.end - 50
        else:
            offset = e.end or 0
        message = "cannot parse SQL: unexpected end of text (an unclosed comment?)"
        if not isinstance(cause, IndexError):
            message = f"cannot parse SQL: {cause or e}"
    line = text.count("\n", 0, offset) + 1 + line_offset
    return SqlParseError(message, path=path, line=line, hint=_TOKEN_HINT.format(dialect=dialect))

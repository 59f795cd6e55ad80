"""PostgreSQL: where the race's points are read. New points of the racers since a cursor.

Table and column names come from the config and are always quoted as
identifiers (psycopg.sql), never spliced. Only SELECT is needed, so the DSN
can point at a read replica with a read-only role.

What no racer can do, whatever their phone sends (DESIGN.md, "Reading the
source"): move the cursor for anyone else (it never passes the database's
own now()), stop the read (a value that does not convert costs that row
only), or make every cycle read the same rows again (rows stamped ahead of
now are fetched once, remembered per racer).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Int8

from .config import MAX_ID_CHARS, MAX_NAME_CHARS, Detections
from .config import Source as SourceConfig
from .errors import SourceError
from .model.clock import FUTURE_HORIZON_S, FUTURE_TOLERANCE_S
from .rows import PROBLEMS, Batch, Columns, RawRow, ReadRow

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
BATCH_ROWS = 50_000  # rows held at once, whatever the size of a read
# A first read as columns (no Python object per row) takes the cursor's
# range this many ids at a time: one statement well within
# STATEMENT_TIMEOUT_MS, and a page that fits in memory at once.
COLUMNS_PAGE_IDS = 250_000
MAX_HOLES = 100_000  # ids between two reads listed to be asked for again
# Above this many racers, racers are told apart here, not in the query (README).
FILTER_IN_DATABASE_MAX = 2000
STATEMENT_TIMEOUT_MS = 10_000
INTEGER_TYPES = {"smallint", "integer", "bigint"}
TEXT_TYPES = {"text", "character varying", "character", "name"}
FLOAT_TYPES = {"double precision", "real"}
# Read as they are; any other type (numeric, text) is read as text and
# converted row by row, so one value that does not convert costs one row.
NUMBER_TYPES = FLOAT_TYPES | INTEGER_TYPES | {"numeric"}


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A connection with timeouts, UTC, autocommit (each read sees fresh commits).
    Its errors name the host and database, never the rest of the DSN."""
    try:
        return psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC",
            application_name="racepub",
        )
    except psycopg.Error as e:
        raise SourceError(
            f"cannot connect to the database {where(dsn)}: {_connect_reason(e)}"
        ) from None


def where(dsn: str) -> str:
    """host:port/database of a DSN, fit for a log line (no user, no password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(the database URL is malformed; percent-encode any @ : / in the password)"
    host = str(info.get("host") or "local socket")
    if any(c in host for c in "@/ ") and not host.startswith("/"):
        return "(the database URL's host is malformed; percent-encode any @ in the password)"
    port = f":{info['port']}" if info.get("port") else ""
    return f"{host}{port}/{info.get('dbname') or '(default database)'}"


def _connect_reason(e: psycopg.Error) -> str:
    """Why a connection failed, without echoing the DSN: the server's own
    message when it answered (it never repeats a password), else a category."""
    if e.diag.sqlstate and e.diag.message_primary:
        return e.diag.message_primary
    text = str(e).lower()
    for pattern, reason in (
        (
            r"invalid dsn|invalid percent|missing \"=\"|invalid uri|invalid connection option|"
            r"invalid integer value|unterminated quoted",
            "the database URL is malformed",
        ),
        (r"resolve host|translate host name|name or service", "the host name was not found"),
        (r"refused", "connection refused (is the server running and accepting TCP?)"),
        (r"timeout|timed out", "timed out"),
        (r"password", "authentication failed"),
    ):
        if re.search(pattern, text):
            return reason
    return "connection failed"


def describe(conn: psycopg.Connection[Any], cfg: SourceConfig | Detections) -> dict[str, str]:
    """Column name -> type of the source table ({} if there is no such table)."""
    table = sql.Identifier(*cfg.table_parts).as_string(conn)
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    ).fetchall()
    return {name: base_type(typ) for name, typ in rows}


def base_type(type_name: str) -> str:
    """'timestamp(6) without time zone' -> 'timestamp without time zone', etc."""
    return re.sub(r"\(\d+(,\d+)?\)", "", type_name)


def insert_order_columns(conn: psycopg.Connection[Any], cfg: SourceConfig) -> list[str]:
    """Columns that record insert order, best first: an identity or serial
    key, then a timestamp the database fills in (received_at, Traccar's
    servertime). Either can be `ingest`."""
    table = sql.Identifier(*cfg.table_parts).as_string(conn)
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attidentity, "
        "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (table,),
    ).fetchall()
    keys, stamps = [], []
    for name, typ, identity, default in rows:
        default = (default or "").lower()
        if base_type(typ) in INTEGER_TYPES and (identity or "nextval(" in default):
            keys.append(name)
        elif typ.startswith("timestamp") and any(
            f in default
            for f in (
                "now()",
                "current_timestamp",
                "clock_timestamp",
                "statement_timestamp",
                "transaction_timestamp",
            )
        ):
            stamps.append(name)
    return keys + stamps


def index_advice(conn: psycopg.Connection[Any], cfg: SourceConfig) -> str | None:
    """The CREATE INDEX to add when no index leads with the cursor column
    (each incremental read would otherwise scan the table), else None."""
    table = sql.Identifier(*cfg.table_parts).as_string(conn)
    cursor_col = cfg.ingest or cfg.time
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisvalid",
        (table,),
    ).fetchall()
    if any(name == cursor_col for (name,) in rows):
        return None
    return (
        sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({});")
        .format(sql.Identifier(*cfg.table_parts), sql.Identifier(cursor_col))
        .as_string(conn)
    )


def missing_columns(cfg: SourceConfig, columns: dict[str, str]) -> list[str]:
    wanted = [cfg.racer, cfg.time, cfg.lat, cfg.lon, cfg.ingest, cfg.accuracy, cfg.valid]
    wanted.append(cfg.arrival)
    return [c for c in wanted if c is not None and c not in columns]


def type_problems(cfg: SourceConfig, columns: dict[str, str]) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the source columns' types, one line each."""
    errors, warnings = [], []
    if not _is_timestamp(columns[cfg.time]):
        errors.append(
            f"time column {cfg.time!r} is {columns[cfg.time]}: expected "
            "timestamptz (or timestamp, read as UTC)"
        )
    if cfg.ingest and not (
        columns[cfg.ingest] in INTEGER_TYPES or _is_timestamp(columns[cfg.ingest])
    ):
        errors.append(
            f"ingest column {cfg.ingest!r} is {columns[cfg.ingest]}: expected an "
            "integer (e.g. a bigserial id) or a timestamp"
        )
    if cfg.arrival and not _is_timestamp(columns[cfg.arrival]):
        errors.append(
            f"arrival column {cfg.arrival!r} is {columns[cfg.arrival]}: expected a timestamp "
            "(when the row reached the database, as Traccar's servertime)"
        )
    if cfg.valid and columns[cfg.valid] != "boolean":
        errors.append(f"valid column {cfg.valid!r} is {columns[cfg.valid]}: expected boolean")
    for what, col in (("lat", cfg.lat), ("lon", cfg.lon), ("accuracy", cfg.accuracy)):
        if col is None:
            continue
        typ = columns[col]
        if typ in TEXT_TYPES:
            warnings.append(
                f"{what} column {col!r} is {typ}: read as text and converted "
                "row by row; rows that do not convert are dropped (bad_value)"
            )
        elif typ not in NUMBER_TYPES:
            errors.append(
                f"{what} column {col!r} is {typ}: expected a number "
                "(double precision, real or numeric)"
            )
    return errors, warnings


class PointSource:
    """New points of the configured racers, one query per read.

    The cursor is a high-water mark with an overlap, so rows whose transaction
    commits after a newer row was already read are still picked up:
    - with `ingest` (insert order: a bigserial or a received_at), each read
      starts from the mark of the read before last (one cycle of overlap);
    - without it, from the newest `time` seen (never past the database's
      now()) minus `lookback_s`. Rows stamped more than FUTURE_TOLERANCE_S
      ahead of now() come from a second branch of the same query, each once:
      per racer, only those newer than the newest such row already read.
    Rows read twice because of the overlap are skipped here, silently; real
    duplicates in the table are left for the track to count.

    Each row carries its arrival: the table's `arrival` column if it has
    one (Traccar's servertime), else the ingest timestamp, else the
    database's now() when it was read; None on a first read without either,
    when nobody knows how long rows had been in the table. The race uses it
    to tell phones whose clocks run ahead.
    """

    def __init__(self, dsn: str, cfg: SourceConfig, racer_ids: list[str], start_t: float):
        self.dsn, self.cfg, self.start_t = dsn, cfg, start_t
        self.racer_ids = racer_ids
        self._conn: psycopg.Connection[Any] | None = None
        self._queries: tuple[sql.Composed, sql.Composed, sql.Composed] | None = None
        # The first read as columns, when the cursor is an integer and every
        # number is read as one: (the cursor's range, a page of it).
        self._columnar: tuple[sql.Composed, sql.Composed] | None = None
        self._convert: tuple[bool, bool, bool] = (False, False, False)  # lat, lon, accuracy
        self._ids: list[Any] = []
        self._int_cursor = False
        self._stamp_cursor = False  # ingest is a timestamp: it is each row's arrival
        self._low: float | int | None = None  # exclusive lower bound of the cursor column
        self._hwm: float | int | None = None  # newest cursor value read
        self._seen: dict[Any, float | int] = {}  # rows of the overlap, read already
        self._holes: list[int] = []  # ids skipped by the last read (integer ingest)
        # Ids this read returned (integer ingest) while they can name its
        # holes: not on a first read nor in a burst (_settle). As a list of
        # ints, a catch-up's were freed at its end, but Python's small-object
        # heap stayed that large (DESIGN.md, Memory).
        self._returned: list[np.ndarray] = []
        self._only: set[str] | None = None  # racers filtered here, not in the query
        self._ahead: dict[str, float] = {}  # per racer: newest stamp read that was ahead
        self._burst = False
        self.queries = 0
        self.rows_read = 0  # rows the database returned (before skipping re-reads)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    _CURSOR = ("_low", "_hwm", "_seen", "_holes", "_ahead", "rows_read")

    def cursor(self) -> dict[str, Any]:
        """Where the next read starts, and what it must not return again:
        saved with the race state it belongs to (statefile.py)."""
        return {name: getattr(self, name) for name in self._CURSOR}

    def restore(self, cursor: dict[str, Any]) -> None:
        for name in self._CURSOR:
            setattr(self, name, cursor[name])

    def _prepare(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = connect(self.dsn)
        try:
            columns = describe(conn, self.cfg)
        except psycopg.Error as e:
            conn.close()
            raise SourceError(f"cannot read the source table: {_first_line(e)}") from None
        problem = None
        if not columns:
            problem = f"source table {self.cfg.table!r} not found"
        elif missing := missing_columns(self.cfg, columns):
            problem = (
                f"source table {self.cfg.table!r} has no column {', '.join(map(repr, missing))}"
            )
        elif errors := type_problems(self.cfg, columns)[0]:
            problem = "; ".join(errors)
        if problem:
            conn.close()
            raise SourceError(problem)
        ingest_type = columns[self.cfg.ingest] if self.cfg.ingest else None
        self._int_cursor = ingest_type in INTEGER_TYPES
        self._stamp_cursor = ingest_type is not None and _is_timestamp(ingest_type)
        self._queries = self._build(columns)
        self._columnar = (
            self._build_columnar(columns) if self._int_cursor and not any(self._convert) else None
        )
        self._conn = conn
        return conn

    def _build(self, columns: dict[str, str]) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
        """The first read (everything since the start), the incremental one,
        and the rest of a burst."""
        c = self.cfg
        racer = sql.Identifier(c.racer)
        racer_type = columns[c.racer]
        if len(self.racer_ids) > FILTER_IN_DATABASE_MAX:
            # A mass race: shipping tens of thousands of ids with every query
            # (and planning against them) cost more than the read itself.
            # Every new row is read; those of others are skipped here.
            self._ids = []
            self._only = set(self.racer_ids)
        elif racer_type in INTEGER_TYPES:
            self._ids = [Int8(int(i)) for i in self.racer_ids if _is_int(i)]
            skipped = [i for i in self.racer_ids if not _is_int(i)]
            if skipped:
                log.warning("racer ids %s can never match the integer column %s", skipped, c.racer)
        else:
            self._ids = list(self.racer_ids)
        match = self._match(racer, racer_type)

        def number(col: str | None) -> tuple[sql.Composable, bool]:
            if col is None:
                return sql.SQL("NULL::float8"), False
            if columns[col] in FLOAT_TYPES:
                return sql.Identifier(col), False
            return sql.SQL("{}::text").format(sql.Identifier(col)), True  # converted per row

        (lat, lat_text), (lon, lon_text), (acc, acc_text) = (
            number(c.lat),
            number(c.lon),
            number(c.accuracy),
        )
        self._convert = (lat_text, lon_text, acc_text)
        time = sql.Identifier(c.time)
        col = sql.Identifier(c.ingest or c.time)
        cursor: sql.Composable
        if self._int_cursor:
            # Past the newest id read, or one of the ids skipped then (holes:
            # taken by a transaction not yet committed, or not a racer's row).
            cursor = col
            after = sql.SQL("({c} > %(low)s OR {c} = ANY(%(holes)s))").format(c=col)
            at_least = sql.SQL("{} >= %(low)s").format(col)
        else:  # compare timestamps as timestamps so an index on the column serves
            cursor = sql.SQL("extract(epoch FROM {})::float8").format(col)
            after = sql.SQL("{} > to_timestamp(%(low)s)").format(col)
            at_least = sql.SQL("{} >= to_timestamp(%(low)s)").format(col)
        where = sql.SQL("{match} AND {time} >= to_timestamp(%(start)s)").format(
            match=match, time=time
        )
        if not c.ingest:
            # Rows stamped ahead of now: only those of each racer newer than
            # the newest already read (a phone whose clock runs ahead sends
            # them in order), so none is read twice.
            where += sql.SQL(
                " AND ({time} <= now() + make_interval(secs => %(ahead_s)s) OR ({time} "
                "<= now() + make_interval(secs => %(horizon_s)s) AND {time} > to_timestamp("
                "coalesce((%(ahead)s::jsonb ->> {racer}::text)::float8, 0))))"
            ).format(time=time, racer=racer)
        base = sql.SQL(
            "SELECT left({racer}::text, {id_max}), extract(epoch FROM {time})::float8, "
            "{lat}, {lon}, {acc}, "
            "{valid}, {cursor}, extract(epoch FROM now())::float8, {arrival} FROM {table} "
            "WHERE {where}"
        ).format(
            racer=racer,
            id_max=sql.Literal(MAX_ID_CHARS + 1),  # longer is no racer's, and costs no more
            time=time,
            arrival=sql.SQL("extract(epoch FROM {})::float8").format(sql.Identifier(c.arrival))
            if c.arrival
            else sql.SQL("NULL::float8"),
            lat=lat,
            lon=lon,
            acc=acc,
            cursor=cursor,
            valid=sql.Identifier(c.valid) if c.valid else sql.SQL("NULL::boolean"),
            table=sql.Identifier(*c.table_parts),
            where=where,
        )
        order = sql.SQL(" ORDER BY {} LIMIT %(limit)s").format(col)
        # The rest of a burst, from the last row of the first page on (that
        # row again, and any sharing its time, are skipped as seen).
        rest = base + sql.SQL(" AND ") + at_least + sql.SQL(" ORDER BY {}").format(col)
        return base + order, base + sql.SQL(" AND ") + after + order, rest

    def _match(self, racer: sql.Identifier, racer_type: str) -> sql.Composable:
        """The query's test that a row is one of the race's racers."""
        if self._only is not None:
            return sql.SQL("TRUE")
        if racer_type in INTEGER_TYPES or racer_type in TEXT_TYPES:
            return sql.SQL("{} = ANY(%(ids)s)").format(racer)
        # uuid and the like: compare as text (no index use, but correct)
        return sql.SQL("{}::text = ANY(%(ids)s)").format(racer)

    def _build_columnar(self, columns: dict[str, str]) -> tuple[sql.Composed, sql.Composed]:
        """A first read as columns: each page of the cursor's range is one
        bytea of fixed-width records (_RECORD) the database packs itself, the
        racer as its index in racer_ids (joined in SQL), NULLs as NaN and a
        flag. numpy takes a page apart with no Python object per row, and
        psycopg receives one value, not a row at a time (COPY would hand
        Python each row). Rows without a cursor value are not read (nor are
        they by any read after a first). Returns (the cursor's range, one
        page of it)."""
        c = self.cfg

        def col(name: str) -> sql.Identifier:
            return sql.Identifier("src", name)

        def number(name: str | None) -> sql.Composable:
            if name is None:
                return sql.SQL("float8send('NaN')")
            return sql.SQL("float8send(coalesce({}::float8, 'NaN'))").format(col(name))

        time, cursor = col(c.time), col(c.ingest or c.time)
        table = sql.Identifier(*c.table_parts)
        where = sql.SQL("{match} AND {time} >= to_timestamp(%(start)s)").format(
            match=self._match(col(c.racer), columns[c.racer]), time=time
        )
        span = sql.SQL("SELECT min({c}), max({c}) FROM {table} AS src WHERE {where}").format(
            c=cursor, table=table, where=where
        )
        # Another user's rows (a mass race) are not the race's: not read at
        # all. A row whose racer is not one (an integer id spelt otherwise
        # in the config) is read, to be counted.
        join = sql.SQL("JOIN" if self._only is not None else "LEFT JOIN")
        page = sql.SQL(
            "SELECT string_agg(int4send((coalesce(r.racepub_k, 0) - 1)::int4) "
            "|| float8send(extract(epoch FROM {time})::float8) || {lat} || {lon} || {acc} "
            "|| boolsend({lat_col} IS NULL OR {lon_col} IS NULL) || boolsend({invalid}) "
            "|| int8send({cursor}::int8) || {arrival}, ''::bytea) FROM {table} AS src {join} "
            "unnest(%(names)s::text[]) WITH ORDINALITY AS r(racepub_id, racepub_k) "
            "ON {racer}::text = r.racepub_id "
            "WHERE {where} AND {cursor} >= %(low)s AND {cursor} < %(high)s"
        ).format(
            time=time,
            lat=number(c.lat),
            lon=number(c.lon),
            acc=number(c.accuracy),
            arrival=sql.SQL("float8send(coalesce(extract(epoch FROM {})::float8, 'NaN'))").format(
                col(c.arrival)
            )
            if c.arrival
            else number(None),
            lat_col=col(c.lat),
            lon_col=col(c.lon),
            invalid=sql.SQL("{} IS FALSE").format(col(c.valid)) if c.valid else sql.SQL("false"),
            cursor=cursor,
            table=table,
            join=join,
            racer=col(c.racer),
            where=where,
        )
        return span, page

    def _first_columns(self, conn: psycopg.Connection[Any]) -> Iterator[Columns]:
        """The first read as Columns, a range of the cursor at a time, in
        cursor order as the other reads are. The database packs the next
        page while this one is applied: a restart's catch-up keeps both
        cores busy (the database's work was a fifth of it)."""
        assert self._columnar is not None
        span, page = self._columnar
        params = self._params(None, None) | {"names": self.racer_ids}
        low, high = conn.execute(span, params).fetchone() or (None, None)
        self.queries += 1
        if low is None or high is None:
            return
        cur = conn.cursor(binary=True)

        def fetch(lo: int) -> bytes:
            bounds = {"low": Int8(lo), "high": Int8(min(lo + COLUMNS_PAGE_IDS, high + 1))}
            (packed,) = cur.execute(page, params | bounds).fetchone() or (None,)
            return packed or b""

        pages = range(int(low), int(high) + 1, COLUMNS_PAGE_IDS)
        with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as ahead:
            coming = ahead.submit(fetch, pages[0])
            for k in range(len(pages)):
                packed = coming.result()
                if k + 1 < len(pages):
                    coming = ahead.submit(fetch, pages[k + 1])
                self.queries += 1
                yield self._page(np.frombuffer(packed, dtype=_RECORD))

    def _page(self, rows: np.ndarray) -> Columns:
        self.rows_read += len(rows)
        rows = rows[np.argsort(rows["cursor"], kind="stable")]
        if len(rows):  # (every row has a time: the query asks for one since the start)
            top = int(rows["cursor"][-1])
            self._hwm = top if self._hwm is None or top > self._hwm else self._hwm
        return Columns(
            racer=rows["racer"].astype(np.int64),
            t=rows["t"].astype(np.float64),
            lat=rows["lat"].astype(np.float64),
            lon=rows["lon"].astype(np.float64),
            accuracy=rows["accuracy"].astype(np.float64),
            # A first read: unknown, unless the table has an arrival column.
            arrival=rows["arrival"].astype(np.float64),
            null=rows["null"].astype(bool),
            problem=np.where(rows["invalid"], PROBLEMS.index("invalid"), 0).astype(np.int8),
        )

    def read(self, now: float) -> Iterator[Batch]:
        """The rows committed since the last read (plus the overlap, deduplicated),
        in batches: a restart or a burst of a million rows never sits in memory
        at once. One query in the usual case; a burst streams the rest through
        a server-side cursor."""
        before = self._hwm
        first_read = self._low is None
        try:
            conn = self._prepare()
            # (_settle looks for holes.) Asked after _prepare: a restored
            # cursor's first read learns there what the cursor column is; as
            # before, every id it returned was taken for a hole, read again
            # and counted against its racer as a duplicate.
            listing = self._int_cursor and before is not None
            if first_read and self._columnar is not None:
                yield from self._first_columns(conn)
                self._settle(before)
                return
            assert self._queries is not None
            first, since, rest = self._queries
            # Binary: a row's numbers arrive as numbers, not text to parse.
            page = (
                conn.cursor(binary=True)
                .execute(first if first_read else since, self._params(self._low, BATCH_ROWS))
                .fetchall()
            )
            self.queries += 1
            self.rows_read += len(page)
            yield self._fresh(page, first_read, listing)
            if len(page) == BATCH_ROWS:
                with conn.transaction(), conn.cursor(name="racepub_burst", binary=True) as cur:
                    cur.execute(rest, self._params(page[-1][6], None))
                    self.queries += 1
                    while batch := cur.fetchmany(BATCH_ROWS):
                        self.rows_read += len(batch)
                        yield self._fresh(batch, first_read, listing)
        except psycopg.Error as e:
            self.close()
            if first_read:
                # What was handed over was applied: the next read goes on
                # from it. (From the start again, a restart's rows were all
                # applied twice, each counted as dropped the second time.)
                self._settle(before)
            raise SourceError(f"database read failed: {_first_line(e)}") from None
        self._settle(before)

    def _params(self, low: float | int | None, limit: int | None) -> dict[str, Any]:
        if self._int_cursor and low is not None:
            low = Int8(int(low))
        return {
            "ids": self._ids,
            "start": self.start_t,
            "low": low,
            "limit": limit,
            "ahead_s": FUTURE_TOLERANCE_S,
            "horizon_s": FUTURE_HORIZON_S,
            "ahead": Jsonb(self._ahead),
            "holes": self._holes,
        }

    def _fresh(self, rows: list[tuple[Any, ...]], first_read: bool, listing: bool) -> list[RawRow]:
        fresh: list[RawRow] = []
        ingest = self.cfg.ingest
        lat_text, lon_text, acc_text = self._convert
        if listing and not self._burst:
            ids = np.fromiter((row[6] for row in rows if row[6] is not None), dtype=np.int64)
            self._returned.append(ids)
        only = self._only
        # Locals: this loop runs for every row of every read.
        seen, int_cursor, stamp_cursor, hwm = (
            self._seen,
            self._int_cursor,
            self._stamp_cursor,
            self._hwm,
        )
        for racer_id, t, lat, lon, accuracy, valid, cur, db_now, arrived in rows:
            if only is not None and racer_id not in only:
                continue  # another user's row: not the race's, not counted
            if cur is None:  # no insert-order value: the cursor cannot track it
                fresh.append((racer_id, None, None, None, None, None, None))
                continue
            # Insert-order values are unique; times are unique per racer.
            key = cur if int_cursor else (cur, racer_id)
            if key in seen:
                continue
            seen[key] = cur
            problem = None
            if lat_text or lon_text or acc_text:
                try:
                    lat = _number(lat) if lat_text else lat
                    lon = _number(lon) if lon_text else lon
                    accuracy = _number(accuracy) if acc_text else accuracy
                except ValueError:
                    problem = "bad_value"
                    lat = lon = accuracy = None  # the row carries its problem only
            if valid is False:
                problem = problem or "invalid"
            if arrived is not None:  # the table's own arrival column
                arrival: float | None = min(arrived, db_now)
            elif stamp_cursor:
                arrival = min(float(cur), db_now)
            else:
                arrival = None if first_read else db_now
            fresh.append((racer_id, t, lat, lon, accuracy, arrival, problem))
            if t is None:
                continue
            if not ingest and t > db_now + FUTURE_TOLERANCE_S:
                self._ahead[racer_id] = max(t, self._ahead.get(racer_id, t))
                continue  # from the branch for rows ahead: the cursor stays
            # The cursor never passes the database's now(): a phone whose
            # clock runs ahead must not hide anyone's fixes behind it.
            mark = cur if int_cursor else min(float(cur), db_now)
            hwm = mark if hwm is None or mark > hwm else hwm
        self._hwm = hwm
        if len(self._seen) > BATCH_ROWS and self._hwm is not None:
            # Memory stays bounded in a burst: with a time cursor, rows older
            # than lookback_s behind the newest can never be returned again;
            # with an ingest cursor the overlap is given up for this one read.
            keep = self._hwm - self.cfg.lookback_s if not ingest else self._hwm
            self._seen = {k: v for k, v in self._seen.items() if v > keep}
            self._burst = True
        return fresh

    def _settle(self, before: float | int | None) -> None:
        """Where the next read starts, and forget rows it cannot return again."""
        if self._hwm is None:
            return
        returned, self._returned = self._returned, []
        if self._int_cursor:
            # A row whose id was taken before a newer row was read, but which
            # committed a moment later, is found the next read: the ids this
            # read passed over are asked for again, once. (Too many to list,
            # in a table shared with others: from the mark before this read.)
            self._holes, self._low = [], self._hwm
            if before is not None and not self._burst:
                span = int(self._hwm) - int(before)
                if span > MAX_HOLES:
                    self._low = before
                else:  # (a mask, not setdiff1d: that sorted both, ~2 % of a cycle)
                    first = int(before) + 1
                    skipped = np.ones(span, dtype=bool)
                    got = np.concatenate(returned) if returned else np.zeros(0, np.int64)
                    got = got[(got >= first) & (got < first + span)]
                    skipped[got - first] = False
                    self._holes = (np.flatnonzero(skipped) + first).tolist()
        elif self.cfg.ingest:
            # From the mark before this read: a row stamped earlier but
            # committed within a cycle is still found.
            self._low = before if before is not None and not self._burst else self._hwm
        else:
            self._low = max(self.start_t, float(self._hwm) - self.cfg.lookback_s)
        low = self._low
        self._seen = {k: v for k, v in self._seen.items() if v > low}
        self._burst = False


# A row as _build_columnar's query packs it (the *send functions: big-endian).
_RECORD = np.dtype(
    [
        ("racer", ">i4"),
        ("t", ">f8"),
        ("lat", ">f8"),
        ("lon", ">f8"),
        ("accuracy", ">f8"),
        ("null", "?"),
        ("invalid", "?"),
        ("cursor", ">i8"),
        ("arrival", ">f8"),
    ]
)


def _number(value: str | None) -> float | None:
    """A number read as text (numeric or text columns). ValueError if it is
    not one; 1e400 becomes inf, which the race drops as not finite."""
    return None if value is None else float(value.strip())


def _is_timestamp(type_name: str) -> bool:
    return type_name.startswith("timestamp")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class ReadSource:
    """Chip reads of the configured racers from a timing system's table
    ([detections]), one query a cycle, by the rules of PointSource: the
    table and columns quoted as identifiers, SELECT only; the cursor the
    `ingest` column (insert order: reads delivered late are not missed) or
    else the read time, never past the database's now(), each read looking
    back one cycle (ingest) or `lookback_s` (time); rows read twice in the
    overlap skipped. Reads are few beside fixes (a racer passes a mat a few
    times a race), so every read is rows, at once."""

    def __init__(self, dsn: str, cfg: Detections, racer_ids: list[str], start_t: float):
        self.dsn, self.cfg, self.start_t = dsn, cfg, start_t
        self.racer_ids = racer_ids
        self._conn: psycopg.Connection[Any] | None = None
        self._query: sql.Composed | None = None
        self._ids: list[str] | None = None  # None: every racer's rows are read, told apart here
        self._low: float | None = None  # exclusive lower bound of the cursor
        self._hwm: float | None = None
        self._seen: dict[tuple[Any, ...], float] = {}  # rows of the overlap, read already
        self.queries = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def cursor(self) -> dict[str, Any]:
        return {"low": self._low, "hwm": self._hwm, "seen": self._seen}

    def restore(self, cursor: dict[str, Any]) -> None:
        self._low, self._hwm, self._seen = cursor["low"], cursor["hwm"], cursor["seen"]

    def _prepare(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = connect(self.dsn)
        c = self.cfg
        try:
            columns = describe(conn, c)
        except psycopg.Error as e:
            conn.close()
            raise SourceError(f"cannot read the detections table: {_first_line(e)}") from None
        wanted = [x for x in (c.racer, c.checkpoint, c.time, c.ingest) if x]
        problem = None
        if not columns:
            problem = f"detections table {c.table!r} not found"
        elif missing := [x for x in wanted if x not in columns]:
            problem = f"detections table {c.table!r} has no column {', '.join(map(repr, missing))}"
        elif not _is_timestamp(columns[c.time]):
            problem = f"detections column {c.time!r} is {columns[c.time]}: expected a timestamp"
        if problem:
            conn.close()
            raise SourceError(problem)
        racer = sql.Identifier(c.racer)
        time = sql.Identifier(c.time)
        cursor_col = sql.Identifier(c.ingest or c.time)
        ingest_type = columns[c.ingest] if c.ingest else None
        cursor = (
            cursor_col
            if ingest_type in INTEGER_TYPES
            else sql.SQL("extract(epoch FROM {})::float8").format(cursor_col)
        )
        if len(self.racer_ids) > FILTER_IN_DATABASE_MAX:
            match: sql.Composable = sql.SQL("TRUE")
        else:
            self._ids = list(self.racer_ids)
            match = sql.SQL("{}::text = ANY(%(ids)s)").format(racer)
        self._query = sql.SQL(
            # A value longer than any racer's id or mat's name is none of
            # them; cut, so a hostile row costs no more than a fair one.
            "SELECT left({racer}::text, {id_max}), left({checkpoint}::text, {name_max}), "
            "extract(epoch FROM {time})::float8, "
            "{cursor}::float8, extract(epoch FROM now())::float8 FROM {table} "
            "WHERE {match} AND ({time} >= to_timestamp(%(start)s) OR {time} IS NULL) "
            "AND {cursor}::float8 > %(low)s ORDER BY {cursor_col}"
        ).format(
            racer=racer,
            id_max=sql.Literal(MAX_ID_CHARS + 1),
            name_max=sql.Literal(MAX_NAME_CHARS + 1),
            checkpoint=sql.Identifier(c.checkpoint),
            time=time,
            cursor=cursor,
            cursor_col=cursor_col,
            table=sql.Identifier(*c.table_parts),
            match=match,
        )
        self._conn = conn
        return conn

    def read(self, now: float) -> list[ReadRow]:
        """The reads committed since the last (the overlap skipped)."""
        try:
            conn = self._prepare()
            assert self._query is not None
            low = -1e300 if self._low is None else self._low
            rows = conn.execute(
                self._query, {"ids": self._ids, "start": self.start_t, "low": low}
            ).fetchall()
            self.queries += 1
        except psycopg.Error as e:
            self.close()
            raise SourceError(f"database read of detections failed: {_first_line(e)}") from None
        fresh: list[ReadRow] = []
        before = self._hwm
        for racer, checkpoint, t, cur, db_now in rows:
            key = (racer, checkpoint, t, cur)
            if key in self._seen:
                continue
            self._seen[key] = cur
            fresh.append((racer, checkpoint, t, db_now))
            # The read time as cursor never passes the database's now(): a
            # timing system's clock ahead cannot hide the reads after it.
            mark = cur if self.cfg.ingest else min(cur, db_now)
            if self._hwm is None or mark > self._hwm:
                self._hwm = mark
        if self._hwm is not None:
            if self.cfg.ingest:
                # From the mark before this read: a read committed within a
                # cycle of a newer one is still found.
                self._low = before if before is not None else self._hwm
            else:
                self._low = max(self.start_t, self._hwm - self.cfg.lookback_s)
            low_now = self._low
            self._seen = {k: v for k, v in self._seen.items() if v > low_now}
        return fresh

"""PostgreSQL: the one place SQL lives. Reads the new points of the racers since a cursor.

Table and column names come from the config and are always quoted as
identifiers (psycopg.sql), never spliced. Only SELECT is needed, so the DSN
can point at a read replica with a read-only role.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.numeric import Int8

from .config import Source as SourceConfig
from .errors import SourceError
from .race import MAX_FUTURE_S, Row

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
BATCH_ROWS = 50_000  # rows held at once, whatever the size of a read
STATEMENT_TIMEOUT_MS = 10_000
_INTEGER_TYPES = {"smallint", "integer", "bigint"}
_TEXT_TYPES = {"text", "character varying", "character", "name"}


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A connection with timeouts, UTC, autocommit (each read sees fresh commits)."""
    try:
        return psycopg.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c TimeZone=UTC",
            application_name="racepub",
        )
    except psycopg.Error as e:
        raise SourceError(f"cannot connect to the database: {_first_line(e)}") from None


def describe(conn: psycopg.Connection[Any], cfg: SourceConfig) -> dict[str, str]:
    """Column name -> type of the source table ({} if there is no such table)."""
    table = sql.Identifier(*cfg.table_parts).as_string(conn)
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (table,),
    ).fetchall()
    return {name: typ for name, typ in rows}


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
    return sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({});").format(
        sql.Identifier(*cfg.table_parts), sql.Identifier(cursor_col)).as_string(conn)


def missing_columns(cfg: SourceConfig, columns: dict[str, str]) -> list[str]:
    wanted = [cfg.racer, cfg.time, cfg.lat, cfg.lon, cfg.ingest, cfg.accuracy]
    return [c for c in wanted if c is not None and c not in columns]


class PointSource:
    """New points of the configured racers, one query per read.

    The cursor is a high-water mark with an overlap, so rows whose transaction
    commits after a newer row was already read are still picked up:
    - with `ingest` (insert order: a bigserial or a received_at), each read
      starts from the mark of the read before last (one cycle of overlap);
    - without it, from the newest `time` seen minus `lookback_s`.
    Rows read twice because of the overlap are skipped here, silently; real
    duplicates in the table are left for the track to count.
    """

    def __init__(self, dsn: str, cfg: SourceConfig, racer_ids: list[str], start_t: float):
        self.dsn, self.cfg, self.start_t = dsn, cfg, start_t
        self.racer_ids = racer_ids
        self._conn: psycopg.Connection[Any] | None = None
        self._queries: tuple[sql.Composed, sql.Composed, sql.Composed] | None = None
        self._ids: list[Any] = []
        self._int_cursor = False
        self._low: float | int | None = None  # exclusive lower bound of the cursor column
        self._hwm: float | int | None = None  # newest cursor value read
        self._seen: dict[Any, float | int] = {}  # rows of the overlap, read already
        self._burst = False
        self.queries = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _prepare(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = connect(self.dsn)
        try:
            columns = describe(conn, self.cfg)
        except psycopg.Error as e:
            conn.close()
            raise SourceError(f"cannot read the source table: {_first_line(e)}") from None
        if not columns:
            conn.close()
            raise SourceError(f"source table {self.cfg.table!r} not found")
        missing = missing_columns(self.cfg, columns)
        if missing:
            conn.close()
            raise SourceError(f"source table {self.cfg.table!r} has no column "
                              f"{', '.join(map(repr, missing))}")
        ingest_type = columns[self.cfg.ingest] if self.cfg.ingest else None
        if ingest_type and not (ingest_type in _INTEGER_TYPES or _is_timestamp(ingest_type)):
            conn.close()
            raise SourceError(f"ingest column {self.cfg.ingest!r} is {ingest_type}: expected "
                              "an integer (e.g. a bigserial id) or a timestamp")
        self._int_cursor = ingest_type in _INTEGER_TYPES
        self._queries = self._build(columns[self.cfg.racer])
        self._conn = conn
        return conn

    def _build(self, racer_type: str) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
        """The first read (everything since the start), the incremental one,
        and the rest of a burst."""
        c = self.cfg
        racer = sql.Identifier(c.racer)
        if racer_type in _INTEGER_TYPES:
            self._ids = [Int8(int(i)) for i in self.racer_ids if _is_int(i)]
            skipped = [i for i in self.racer_ids if not _is_int(i)]
            if skipped:
                log.warning("racer ids %s can never match the integer column %s",
                            skipped, c.racer)
            match = sql.SQL("{} = ANY(%(ids)s)").format(racer)
        elif racer_type in _TEXT_TYPES:
            self._ids = list(self.racer_ids)
            match = sql.SQL("{} = ANY(%(ids)s)").format(racer)
        else:  # uuid and the like: compare as text (no index use, but correct)
            self._ids = list(self.racer_ids)
            match = sql.SQL("{}::text = ANY(%(ids)s)").format(racer)
        col = sql.Identifier(c.ingest or c.time)
        cursor: sql.Composable
        if self._int_cursor:
            cursor, after = col, sql.SQL("{} > %(low)s").format(col)
            at_least = sql.SQL("{} >= %(low)s").format(col)
        else:  # compare timestamps as timestamps so an index on the column serves
            cursor = sql.SQL("extract(epoch FROM {})::float8").format(col)
            after = sql.SQL("{} > to_timestamp(%(low)s)").format(col)
            at_least = sql.SQL("{} >= to_timestamp(%(low)s)").format(col)
        base = sql.SQL(
            "SELECT {racer}::text, extract(epoch FROM {time})::float8, {lat}::float8, "
            "{lon}::float8, {accuracy}, {cursor} FROM {table} "
            "WHERE {match} AND {time} >= to_timestamp(%(start)s)"
        ).format(racer=racer, time=sql.Identifier(c.time), lat=sql.Identifier(c.lat),
                 lon=sql.Identifier(c.lon), table=sql.Identifier(*c.table_parts),
                 match=match, cursor=cursor,
                 accuracy=sql.SQL("{}::float8").format(sql.Identifier(c.accuracy))
                 if c.accuracy else sql.SQL("NULL::float8"))
        order = sql.SQL(" ORDER BY {} LIMIT %(limit)s").format(col)
        # The rest of a burst, from the last row of the first page on (that
        # row again, and any sharing its time, are skipped as seen).
        rest = base + sql.SQL(" AND ") + at_least + sql.SQL(" ORDER BY {}").format(col)
        return base + order, base + sql.SQL(" AND ") + after + order, rest

    def read(self, now: float) -> Iterator[list[Row]]:
        """The rows committed since the last read (plus the overlap, deduplicated),
        in batches: a restart or a burst of a million rows never sits in memory
        at once. One query in the usual case; a burst streams the rest through
        a server-side cursor."""
        before = self._hwm
        try:
            conn = self._prepare()
            assert self._queries is not None
            first, since, rest = self._queries
            page = conn.execute(first if self._low is None else since,
                                self._params(self._low, BATCH_ROWS)).fetchall()
            self.queries += 1
            yield self._fresh(page, now)
            if len(page) == BATCH_ROWS:
                with conn.transaction(), conn.cursor(name="racepub_burst") as cur:
                    cur.execute(rest, self._params(page[-1][5], None))
                    self.queries += 1
                    while batch := cur.fetchmany(BATCH_ROWS):
                        yield self._fresh(batch, now)
        except psycopg.Error as e:
            self.close()
            raise SourceError(f"database read failed: {_first_line(e)}") from None
        self._settle(before)

    def _params(self, low: float | int | None, limit: int | None) -> dict[str, Any]:
        if self._int_cursor and low is not None:
            low = Int8(int(low))
        return {"ids": self._ids, "start": self.start_t, "low": low, "limit": limit}

    def _fresh(self, rows: list[tuple[Any, ...]], now: float) -> list[Row]:
        fresh: list[Row] = []
        for racer_id, t, lat, lon, accuracy, cur in rows:
            if cur is None:  # no insert-order value: the cursor cannot track it
                fresh.append(Row(racer_id, None, None, None))
                continue
            # Insert-order values are unique; times are unique per racer.
            key = cur if self._int_cursor else (cur, racer_id)
            if key in self._seen:
                continue
            fresh.append(Row(racer_id, t, lat, lon, accuracy))
            # A fix stamped in the future must not drag a time cursor ahead.
            if self.cfg.ingest or t <= now + MAX_FUTURE_S:
                self._hwm = cur if self._hwm is None else max(self._hwm, cur)
            self._seen[key] = cur
        if len(self._seen) > BATCH_ROWS and self._hwm is not None:
            # Memory stays bounded in a burst: with a time cursor, rows older
            # than lookback_s behind the newest can never be returned again;
            # with an ingest cursor the overlap is given up for this one read.
            keep = self._hwm - self.cfg.lookback_s if not self.cfg.ingest else self._hwm
            self._seen = {k: v for k, v in self._seen.items() if v > keep}
            self._burst = True
        return fresh

    def _settle(self, before: float | int | None) -> None:
        """Where the next read starts, and forget rows it cannot return again."""
        if self._hwm is None:
            return
        if self.cfg.ingest:
            # From the mark before this read: a row whose id was taken earlier
            # but committed within a cycle is still found.
            self._low = before if before is not None and not self._burst else self._hwm
        else:
            self._low = max(self.start_t, float(self._hwm) - self.cfg.lookback_s)
        low = self._low
        self._seen = {k: v for k, v in self._seen.items() if v > low}
        self._burst = False


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

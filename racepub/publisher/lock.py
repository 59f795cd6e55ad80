"""One publisher per race: a PostgreSQL advisory lock on a connection of its own.

The lock lives as long as that connection: when the active publisher dies,
the server drops the connection and the lock with it, and a standby's next
try takes over. Point every instance of a race at the same server.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import psycopg

from ..errors import SourceError
from ..source import connect

log = logging.getLogger(__name__)


def lock_key(race_id: str) -> int:
    """A stable signed 64-bit key for the race (the same in every process)."""
    digest = hashlib.sha256(f"racepub:{race_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RaceLock:
    def __init__(self, dsn: str, race_id: str):
        self.dsn, self.key = dsn, lock_key(race_id)
        self._conn: psycopg.Connection[Any] | None = None

    def hold(self) -> bool:
        """True while this process holds the lock (taking it when free),
        False while another does. Raises SourceError if the database cannot
        say. Each call costs one round trip: a lock on a dead connection is
        no lock at all, and two publishers must never both believe they hold it.
        """
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute("SELECT 1")
                return True
            self._conn = connect(self.dsn)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as e:
            self.release()
            raise SourceError(f"race lock: {str(e).strip().splitlines()[0]}") from None
        except SourceError:
            self.release()
            raise
        if not (row and row[0]):
            self.release()
            return False
        return True

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

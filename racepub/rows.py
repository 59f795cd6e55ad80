"""The rows a source hands over, as tuples or as columns: the bottom layer,
imported by the source (which makes them) and the race (which checks and
applies them). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Row(NamedTuple):
    """A raw row from the source, before any check. (A tuple: a large race
    makes ~40,000 a cycle, and a frozen dataclass costs 3x as much to build.)"""

    racer_id: str
    t: float | None
    lat: float | None
    lon: float | None
    accuracy: float | None = None  # metres, when the source has the column (0: unknown)
    # When the row reached the database (its now() when read, or the ingest
    # timestamp); None when unknown (a first read after a start).
    arrival: float | None = None
    problem: str | None = None  # set by the source: bad_value, invalid


# Row's fields (racer_id, t, lat, lon, accuracy, arrival, problem) as a
# plain tuple: what the source reads. (Building a Row is a Python call,
# ~0.6 us: a second of a cold restart's 3.6 M rows.)
_N = float | None
RawRow = tuple[str, _N, _N, _N, _N, _N, str | None]
PROBLEMS = (None, "bad_value", "invalid")  # a source's problem with a row, by code


@dataclass
class Columns:
    """Rows as columns: what a first read hands over (source.py), with no
    Python object per row (a restart's 3.6 M rows as tuples cost more to
    make and take apart than to apply), and what update() makes of tuples."""

    racer: np.ndarray  # index in the race's racers (config order); -1: not one
    t: np.ndarray  # epoch seconds; nan where null
    lat: np.ndarray
    lon: np.ndarray
    accuracy: np.ndarray  # nan: unknown
    arrival: np.ndarray  # nan: unknown (Row.arrival None)
    null: np.ndarray  # t, lat or lon is NULL (not a NaN the row carries)
    problem: np.ndarray  # int8: code in PROBLEMS

    def __len__(self) -> int:
        return len(self.racer)

    @classmethod
    def of(cls, rows: list[RawRow], index: dict[str, int]) -> Columns:
        if not rows:
            f = np.zeros(0)
            return cls(
                np.zeros(0, np.int64), f, f, f, f, f, np.zeros(0, bool), np.zeros(0, np.int8)
            )
        ids, ts_, lats, lons, accs, arrivals, problem = zip(*rows, strict=True)
        return cls(
            np.array([index.get(r, -1) for r in ids], dtype=np.int64),
            np.array(ts_, dtype=np.float64),
            np.array(lats, dtype=np.float64),
            np.array(lons, dtype=np.float64),
            np.array(accs, dtype=np.float64),
            np.array(arrivals, dtype=np.float64),
            np.array(
                [
                    a is None or b is None or c is None
                    for a, b, c in zip(ts_, lats, lons, strict=True)
                ]
            ),
            np.array([PROBLEMS.index(p) for p in problem], dtype=np.int8),
        )


Batch = list[RawRow] | Columns  # what a read hands over, batch by batch


def latest_time(rows: Batch) -> float | None:
    """The newest time among the rows (None: none has one)."""
    if isinstance(rows, Columns):
        t = rows.t[~np.isnan(rows.t)]
        return float(t.max()) if len(t) else None
    return max((r[1] for r in rows if r[1] is not None), default=None)


# A timing mat's chip read as the read source hands it over: (racer,
# checkpoint, time, arrival), any of the first three None when NULL.
ReadRow = tuple[str | None, str | None, float | None, float]

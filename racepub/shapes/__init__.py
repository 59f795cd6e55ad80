"""The shapes a race is published in: two shapes of one board (model/board.py).

A small race publishes every record in `snapshot.json` (shapes/small.py); a
large one publishes the leaderboard head there and every racer's numbers in
shards of columns (shapes/field.py: its snapshot carries a `field` block).
Both keep their trails in the same store (shapes/trails.py). The publisher
asks a shape for one cycle's objects and writes them in the order given; it
never asks which shape it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Race
from ..model.board import Board
from ..model.race import RaceState
from ..objects import Object
from .trails import Read, TrailStore

Fetch = Callable[[list[str]], list[bytes | None]]  # many objects' bodies at once


@dataclass
class Output:
    """One cycle's objects, in the order they are written: each stage is in
    place before the next, which points into it; the snapshot last."""

    snapshot: dict[str, Any]
    first: list[Object]  # what the rest point at: packs, rosters, the name index
    then: list[Object]  # trail groups
    # Made while the first of them upload (the large shape's shards).
    lazy: Callable[[], Iterable[Object]] = lambda: ()
    commit: Callable[[], None] = lambda: None  # once the snapshot is in place
    extra: dict[str, float] = field(default_factory=dict)  # ms spent, by stage


class Shape(Protocol):
    # Provisional results are written this often while live; None: only the
    # final ones (a large field's cost a cycle to make).
    results_every_s: float | None

    @property
    def store(self) -> TrailStore: ...

    def once(self) -> list[Object]:
        """Objects made once per start (unchanged ones are not rewritten)."""

    def publish(self, board: Board, seq: int, read: Read, submit: Callable[..., Any]) -> Output:
        """This cycle's objects. `read` reads back written packs (merges),
        `submit` runs a merge on a thread."""

    def resume(self, snapshot: dict[str, Any], fetch: Fetch) -> dict[str, float]:
        """Carry on from what is published: the trails' pieces are taken on
        as this process's own. Returns each racer's published fix time (the
        floor the publisher never goes below) beyond the snapshot's records."""


def make_shape(race: Race, state: RaceState, store: TrailStore | None = None) -> Shape:
    """The race's shape, by the size of its field (`shard_above`)."""
    from .field import FieldShape
    from .small import SmallShape

    if race.field_shape:
        return FieldShape(race, state, store)
    return SmallShape(race, state, store)

"""A race's templates rendered once before anything is published: the page
and the results as a cycle renders them, before the start, during the race
and (with ends_at) after it, with the race's racers waiting. A race's own
template (template_dir) that names what the context does not have, or does
not parse, fails `check` and stops `run` at once (exit 2), with its file and
line, not a cycle later with a traceback."""

from __future__ import annotations

import traceback
from typing import Any

import jinja2

from ..config import Race
from ..model.board import Board
from ..model.course import Course
from ..model.race import RaceState
from ..timefmt import ts
from . import make_shape
from .page import environment, page_context, render_page
from .results import html_bytes, results


def template_problem(race: Race, course: Course) -> str | None:
    """What is wrong with the race's templates (file:line: message), or None."""
    env = environment(race.template_dir)
    state = RaceState(race, course)
    shape = make_shape(race, state)
    start = ts(race.starts_at)
    moments = [start - 60.0, start + 60.0]
    if race.ends_at is not None:
        moments.append(ts(race.ends_at) + 1.0)

    def nothing(*_: object) -> Any:  # no trail yet: nothing is read back or merged
        raise AssertionError("nothing to merge before the start")

    try:
        for now in moments:
            board = Board.of(state, state.moment(now))
            snapshot = shape.publish(board, 1, nothing, nothing).snapshot
            render_page(env, page_context(race, course, snapshot, "static/check"))
            html_bytes(results(state, board, now), env)
    except jinja2.TemplateError as e:
        return _where(e)
    return None


def _where(e: jinja2.TemplateError) -> str:
    """The template's file and line, and what is wrong there."""
    if isinstance(e, jinja2.TemplateSyntaxError):
        where = f"{e.filename or e.name}:{e.lineno}"
    else:  # jinja2 puts the template's own lines in the traceback
        lines = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(".j2")]
        where = f"{lines[-1].filename}:{lines[-1].lineno}" if lines else "a template"
    message = str(e.message if e.message is not None else e).strip().splitlines()
    return f"{where}: {message[0] if message else type(e).__name__}"

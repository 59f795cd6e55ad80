"""The course: GPX parsing and progress by projection onto the polyline."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from racepub.errors import UsageError
from racepub.model.board import snapshot as board_snapshot
from racepub.model.course import (
    MAX_COURSE_M,
    MAX_COURSE_POINTS,
    Course,
    Projection,
    load_gpx,
    write_gpx,
)
from tests.helpers import STOPS

DATA = Path(__file__).parent / "data"


def haversine(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = (tuple(map(math.radians, p)) for p in (a, b))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


def test_demo_course_is_the_b_line() -> None:
    course = load_gpx(
        Path(__file__).parents[1] / "racepub" / "commands" / "demo_race" / "outrunthet.gpx"
    )
    assert course.points[0] == pytest.approx((42.340081, -71.166769))
    assert course.points[-1] == pytest.approx((42.349293, -71.100258))
    assert len(course.points) == 18
    # About 6.2 km stop to stop (shared/data/README.md).
    assert 6100 < course.length_m < 6300


def test_length_matches_great_circle_distance() -> None:
    course = Course(STOPS)
    truth = sum(haversine(a, b) for a, b in zip(STOPS, STOPS[1:], strict=False))
    assert course.length_m == pytest.approx(truth, rel=1e-3)


def test_projection_recovers_distance_along_course() -> None:
    course = Course(STOPS)
    for d in (0.0, 123.4, 1000.0, 0.9 * course.length_m, course.length_m - 1):
        lat, lon = course.at(d)
        p = course.project(lat, lon, near_m=max(0.0, d - 50))
        assert p.distance_m == pytest.approx(d, abs=0.5)
        assert p.offset_m < 0.5


def test_route_and_namespaces(tmp_path: Path) -> None:
    gpx = tmp_path / "route.gpx"
    gpx.write_text(
        '<gpx xmlns="http://www.topografix.com/GPX/1/0"><rte>'
        '<rtept lat="42.0" lon="-71.0"/><rtept lat="42.01" lon="-71.0"/>'
        "</rte></gpx>"
    )
    assert load_gpx(gpx).length_m == pytest.approx(1112, abs=2)


@pytest.mark.parametrize(
    "body",
    [
        "not xml",
        "<gpx></gpx>",
        '<gpx><trk><trkseg><trkpt lat="x" lon="1"/></trkseg></trk></gpx>',
        '<gpx><trk><trkseg><trkpt lat="95" lon="1"/><trkpt lat="1" lon="1"/></trkseg></trk></gpx>',
        '<gpx><trk><trkseg><trkpt lon="1"/><trkpt lat="1" lon="1"/></trkseg></trk></gpx>',
        '<gpx><trk><trkseg><trkpt lat="nan" lon="1"/><trkpt lat="1" lon="1"/></trkseg></trk></gpx>',
        '<kml><trk><trkseg><trkpt lat="2" lon="1"/><trkpt lat="1" lon="1"/></trkseg></trk></kml>',
        '<gpx><trk><trkseg><trkpt lat="2" lon="1"/><trkpt lat="1" lon="1"/></trkseg></trk>',
    ],
)
def test_bad_gpx_is_a_clear_error(tmp_path: Path, body: str) -> None:
    gpx = tmp_path / "bad.gpx"
    gpx.write_text(body)
    with pytest.raises(UsageError, match=str(gpx)):
        load_gpx(gpx)


def test_out_and_back_keeps_racer_on_their_leg(tmp_path: Path) -> None:
    # Out 1 km north, back along the same street: each point is on both legs.
    out = [(42.0 + i * 0.0009, -71.0) for i in range(11)]
    course = Course(out + out[::-1][1:])
    half = course.length_m / 2
    lat, lon = course.at(half + 300)  # on the way back
    assert course.project(lat, lon, near_m=half + 250).distance_m == pytest.approx(
        half + 300, abs=1
    )
    lat, lon = course.at(300)  # same spot on the way out
    assert course.project(lat, lon, near_m=250).distance_m == pytest.approx(300, abs=1)


def test_gpx_round_trip_escapes_name(tmp_path: Path) -> None:
    gpx = tmp_path / "c.gpx"
    gpx.write_text(write_gpx(STOPS, "<B & C>"))
    assert [pytest.approx(p) for p in STOPS] == list(load_gpx(gpx).points)


def test_project_columns_answers_exactly_as_project() -> None:
    """The projection of many fixes at once (the vectorised path) must be the
    same function as the one-at-a-time one: same distances, same offsets,
    same choice between legs, including past the finish."""
    import random

    import numpy as np

    rnd = random.Random(7)
    # A course that folds back on itself, with a vertex every ~10 m.
    base = Course(STOPS + STOPS[-2::-1])
    course = Course([base.at(d) for d in range(0, int(base.length_m), 10)] + [base.points[-1]])
    lat, lon, near, ahead, expect, prefer = [], [], [], [], [], []
    for _ in range(3000):
        d = rnd.uniform(-50, course.length_m + 400)
        x, y = course.to_xy(*course.at(d))
        if d > course.length_m:  # past the finish, on the last segment's line
            x, y = course.beyond(d)
        la, lo = course.to_latlon(x + rnd.gauss(0, 15), y + rnd.gauss(0, 15))
        lat.append(la)
        lon.append(lo)
        near.append(max(0.0, d - rnd.uniform(0, 80)))
        ahead.append(rnd.choice([40.0, 112.0, 300.0, 600.0, 2000.0, 5000.0]))
        expect.append(d + rnd.gauss(0, 20))
        prefer.append(rnd.choice([0.1, 0.05, 0.01]))
    a = np.array
    dist, off, fits = course.project_columns(
        a(lat), a(lon), a(near), a(ahead), a(expect), a(prefer), off_course_m=150.0
    )
    batch = [
        Projection(x, y) if ok else None
        for x, y, ok in zip(dist.tolist(), off.tolist(), fits.tolist(), strict=True)
    ]
    batched = 0
    for i, got in enumerate(batch):
        want = course.project(
            lat[i],
            lon[i],
            near[i],
            ahead_m=ahead[i],
            expect_m=expect[i],
            prefer=prefer[i],
            off_course_m=150.0,
        )
        if got is not None:
            batched += 1
            assert got == want, i
        # Up to 2 km ahead (a fix a minute at 30 km/h is ~600 m) the batch
        # answers; wider windows (5 km, short of the finish) one at a time.
        assert got is not None or ahead[i] > 2000.0, i
    assert 2000 < batched < 3000


def test_a_degenerate_track_falls_back_to_the_route(tmp_path: Path) -> None:
    """Planning tools write a route and a track of one point (the start):
    the route is the course."""
    gpx = tmp_path / "planned.gpx"
    route = "".join(
        f'<rtept lat="{42.0 + i * 0.001}" lon="-71.0"><ele>{10 + i}</ele></rtept>' for i in range(5)
    )
    gpx.write_text(
        '<gpx xmlns="http://www.topografix.com/GPX/1/1" version="1.1">'
        '<trk><trkseg><trkpt lat="42.0" lon="-71.0"/></trkseg></trk>'
        f"<rte>{route}</rte></gpx>"
    )
    course = load_gpx(gpx)
    assert course.source == "route" and len(course.points) == 5
    assert course.elevations == (10.0, 11.0, 12.0, 13.0, 14.0)


def test_real_gpx_keeps_elevation_and_named_waypoints() -> None:
    """A real Garmin log (gpxpy's test file): several tracks, gaps, waypoints."""
    course = load_gpx(Path(__file__).parent / "data" / "cerknicko-jezero.gpx")
    assert course.source == "track" and len(course.points) == 296
    assert all(e is not None and 500 < e < 600 for e in course.elevations)
    names = [w.name for w in course.waypoints]
    assert names[:3] == ["001", "BACK T TH", "BIRDS NEST"] and len(names) == 7


def test_entity_tricks_are_refused(tmp_path: Path) -> None:
    gpx = tmp_path / "bomb.gpx"
    gpx.write_text(
        '<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        '<gpx><trk><name>&b;</name><trkseg><trkpt lat="1" lon="1"/>'
        '<trkpt lat="2" lon="2"/></trkseg></trk></gpx>'
    )
    with pytest.raises(UsageError, match="cannot read GPX course"):
        load_gpx(gpx)


def test_far_off_course_costs_nothing_and_gains_nothing() -> None:
    """A fix kilometres from the course is off course without a search of
    the whole course, and moves nobody on."""
    base = Course(STOPS)
    course = Course([base.at(d) for d in range(0, int(base.length_m), 5)] + [base.points[-1]])
    lat, lon = course.at(1000)
    far = course.project(lat + 0.05, lon, near_m=900, ahead_m=300)
    assert far.offset_m == float("inf") and far.distance_m == 900
    assert course._grid(150.0).near(*course.to_xy(lat + 0.05, lon)) == ()
    near = course.project(lat, lon, near_m=900, ahead_m=300)
    assert near.distance_m == pytest.approx(1000, abs=0.5)


def test_a_value_outside_the_gpx_schema_costs_nothing() -> None:
    """georust/gpx's with_accuracy.gpx (tests/data/README.md): a valid
    three-point track whose last point says <fix>something_not_in_the_spec</fix>.
    gpxpy refused the whole file for it; racepub reads what a course needs
    (positions, elevations, waypoint names) and leaves the rest unread."""
    course = load_gpx(DATA / "with_accuracy.gpx")
    assert course.source == "track"
    assert course.points == ((51.120586, 3.779642), (51.120654, 3.772442), (51.130122, 3.773967))
    assert course.elevations == (50.3, 0.0, None)


def test_odd_optional_values_do_not_refuse_a_course(tmp_path: Path) -> None:
    gpx = tmp_path / "odd.gpx"
    gpx.write_text(
        '<gpx xmlns="http://www.topografix.com/GPX/1/1" xmlns:x="urn:x"><wpt lat="42.005" '
        'lon="-71"><name> Aid 1 </name><fix>4d</fix><x:name>not this</x:name></wpt><trk>'
        "<trkseg>"
        '<trkpt lat="42.0" lon="-71.0"><ele>12.5</ele><time>yesterday</time><sat>many</sat>'
        "<extensions><x:ele>999</x:ele></extensions></trkpt>"
        '<trkpt lat="42.01" lon="-71.0"><ele>high</ele><hdop>-1</hdop></trkpt>'
        '<trkpt lat="42.02" lon="-71.0"><ele>NaN</ele><extensions><x:trkpt lat="0" lon="0"/>'
        "</extensions></trkpt>"
        "</trkseg></trk></gpx>"
    )
    course = load_gpx(gpx)
    assert course.points == ((42.0, -71.0), (42.01, -71.0), (42.02, -71.0))
    assert course.elevations == (12.5, None, None)  # unknown where not a number
    assert [(w.name, w.lat, w.lon) for w in course.waypoints] == [("Aid 1", 42.005, -71.0)]


def big_gpx(path: Path, points: int) -> None:
    """A track of `points` points zigzagging 0.5 m apart (about points/2 metres)."""
    with path.open("w") as f:
        f.write(
            '<?xml version="1.0"?>\n<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        )
        f.write("<trk><trkseg>\n")
        for i in range(points):
            row, col = divmod(i, 2000)
            col = col if row % 2 == 0 else 1999 - col
            f.write(f'<trkpt lat="{42.0 + row * 0.0001:.7f}" lon="{-71.0 + col * 0.0000061:.7f}">')
            f.write(f"<ele>{10 + i % 50}.0</ele></trkpt>\n")
        f.write("</trkseg></trk></gpx>\n")


LOAD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from racepub.errors import UsageError
    from racepub.model.course import load_gpx
    t = time.perf_counter()
    try:
        course = load_gpx(Path(sys.argv[1]))
        got = {"points": len(course.points), "km": course.length_m / 1000}
    except UsageError as e:
        got = {"error": str(e)}
    got["s"] = time.perf_counter() - t
    got["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(got))
    """
)


def load_apart(path: Path) -> dict[str, object]:
    """load_gpx in a process of its own: what it made, its seconds and peak memory."""
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    got: dict[str, object] = json.loads(done.stdout)
    return got


@pytest.mark.slow
def test_a_million_point_course_is_refused_early(tmp_path: Path) -> None:
    """A million points passed `check` after 21 s and 1.1 GB and went whole
    into every page. Now reading stops at the 200,001st point, with one
    line naming the file. (Memory here is a sanity bound, not a benchmark:
    a process importing racepub takes about 40 MB.)"""
    gpx = tmp_path / "million.gpx"
    big_gpx(gpx, 1_000_000)
    got = load_apart(gpx)
    assert got["error"] == (
        f"{gpx}: more than 200,000 points (trkpt, rtept and wpt): expected a course of "
        "at most 200,000 (thin it, e.g. gpsbabel -i gpx -f IN -x simplify,count=20000 -o gpx "
        "-F OUT)"
    )
    assert isinstance(got["peak_mb"], float) and got["peak_mb"] < 300


@pytest.mark.slow
def test_the_largest_course_allowed_loads_and_the_page_carries_5000_points(
    tmp_path: Path,
) -> None:
    """200,000 points (about 100 km): loaded, and the page embeds the
    course simplified to 5,000 points, its start and finish exact (100,000
    points made a 2.5 MB index.html, rendered every 30 s)."""
    from racepub.config import Race, Racer
    from racepub.model.race import RaceState
    from racepub.shapes.page import environment, page_context, render_page

    gpx = tmp_path / "big.gpx"
    big_gpx(gpx, MAX_COURSE_POINTS)
    got = load_apart(gpx)
    assert got["points"] == MAX_COURSE_POINTS
    assert isinstance(got["peak_mb"], float) and got["peak_mb"] < 400
    course = load_gpx(gpx)
    race = Race(
        id="t",
        title="T",
        starts_at=datetime(2014, 7, 25, tzinfo=UTC),
        course=gpx,
        sink="dir:x",
        racers=(Racer("1", "Ann"),),
    )
    snap = board_snapshot(RaceState(race, course), now=0.0, seq=1)
    ctx = page_context(race, course, snap, "static/abc")
    drawn = ctx.config["course"]
    assert len(drawn) == 5000
    assert drawn[0] == [round(v, 6) for v in course.points[0]]
    assert drawn[-1] == [round(v, 6) for v in course.points[-1]]
    html = render_page(environment(None), ctx)
    assert len(html) < 300_000


def test_simplified_keeps_the_shape_the_start_and_the_finish() -> None:
    """A winding course of 20,000 points drawn with 500: within a few
    metres of the course everywhere; a course of fewer points is itself."""
    small = Course(STOPS)
    assert small.simplified(max_points=10) is small
    base = Course(STOPS)
    pts = []
    for k in range(20_000):
        lat, lon = base.at(base.length_m * k / 19_999)
        pts.append((lat + 0.0002 * math.sin(k / 40), lon))  # +-22 m either side, every ~250 m
    course = Course(pts)
    drawn = course.simplified(max_points=500)
    assert len(drawn.points) == 500
    assert drawn.points[0] == course.points[0] and drawn.points[-1] == course.points[-1]
    assert max(drawn.project(lat, lon).offset_m for lat, lon in course.points[::7]) < 3.0
    assert drawn.length_m == pytest.approx(course.length_m, rel=0.02)


def test_a_course_too_long_to_measure_is_refused(tmp_path: Path) -> None:
    """Boston to Lisbon in two points (5,200 km): the first cycle took
    seconds building the course's grid, and a flat projection is wrong over
    such a distance. Refused, naming the file."""
    gpx = tmp_path / "ocean.gpx"
    gpx.write_text(write_gpx([(42.36, -71.06), (38.72, -9.14)], "ocean"))
    with pytest.raises(UsageError) as e:
        load_gpx(gpx)
    assert str(e.value).startswith(f"{gpx}: its track is 5,")
    assert f"expected a course of at most {MAX_COURSE_M / 1000:,.0f} km" in str(e.value)
    # A 24-hour race on a long loop, or a 500 km ultra, is far inside.
    fine = tmp_path / "ultra.gpx"
    fine.write_text(write_gpx([(42.0, -71.0), (42.0 + 4.5, -71.0)], "ultra"))
    assert load_gpx(fine).length_m == pytest.approx(500_000, rel=0.01)

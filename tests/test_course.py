"""The course: GPX parsing and progress by projection onto the polyline."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from racepub.errors import UsageError
from racepub.model.course import Course, load_gpx, write_gpx
from tests.helpers import STOPS


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


def test_project_many_answers_exactly_as_project() -> None:
    """The batched projection a large race's cycle uses must be the same
    function as the one-at-a-time one: same distances, same offsets, same
    choice between legs, including past the finish."""
    import random

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
    batch = course.project_many(lat, lon, near, ahead, expect, prefer, off_course_m=150.0)
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

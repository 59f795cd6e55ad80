"""The command line: parse, load config, call one function, map errors to exit codes."""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import RacepubError, UsageError
from .logs import configure


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


RUN_EPILOG = """\
environment:
  RACEPUB_DATABASE_URL   the source database's DSN (overrides [database] dsn;
                         never logged or published)
  RACEPUB_CONFIG         the config file when --config is not given
  RACEPUB_STATE_DIR      where the race state is saved for a quick restart
                         (default $STATE_DIRECTORY under systemd, else
                         $XDG_STATE_HOME/racepub or ~/.local/state/racepub)
  AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
                         S3 credentials, the usual boto3 chain

exit codes:
  0  stopped by SIGTERM/SIGINT, the race over (finished_grace_s after it
     finished), or --once published
  1  a cycle failed (--once), or the database or sink cannot be used
  2  bad usage or config: fix it; restarting will not help
"""


def parser() -> argparse.ArgumentParser:
    # -v and --log-format work before or after the subcommand: the same
    # options on every subparser, left unset there unless given.
    def logging_options(top: bool) -> _Parser:
        opts = _Parser(add_help=False)
        opts.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=False if top else argparse.SUPPRESS,
            help="debug logging",
        )
        opts.add_argument(
            "--log-format",
            choices=("text", "json"),
            default="text" if top else argparse.SUPPRESS,
            help="text (default), or one JSON object per line",
        )
        return opts

    common = logging_options(top=False)
    p = _Parser(
        prog="racepub",
        description="Publish a live race to S3/CloudFront.",
        parents=[logging_options(top=True)],
    )
    p.add_argument("--version", action="version", version=f"racepub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def race_cmd(name: str, help: str, epilog: str | None = None) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=epilog,
            parents=[common],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_argument("--race", required=True, help="race name, as in [races.NAME]")
        c.add_argument("--config", help="config file (default $RACEPUB_CONFIG or ./racepub.toml)")
        return c

    run = race_cmd("run", "publish the race every interval_s seconds", RUN_EPILOG)
    run.add_argument("--once", action="store_true", help="publish one cycle and exit")
    run.add_argument(
        "--keep-running",
        action="store_true",
        help="do not exit once the race is finished (and finished_grace_s on)",
    )
    run.add_argument(
        "--state-dir",
        help="save the race state here every minute and on "
        "stop; a restart reads only the rows since (default: see below)",
    )
    run.add_argument("--metrics-port", type=_port, help="serve Prometheus metrics on this port")
    run.add_argument(
        "--metrics-host",
        type=_host,
        default="127.0.0.1",
        help="address for --metrics-port (default 127.0.0.1)",
    )
    race_cmd("status", "what spectators see now: seq and age of the published snapshot")
    chk = race_cmd("check", "preflight: config, course, page templates, database, sink")
    chk.add_argument(
        "--cdn",
        metavar="URL",
        help="instead, check the CDN serving the race at URL (its page's "
        "address) while `racepub run` publishes: caching, gzip, query "
        "strings, how far behind; exit 1 if spectators would see stale data",
    )
    sim = race_cmd("simulate", "write simulated points for the racers into the source table")
    sim.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="racers move this many times faster than real (default 1)",
    )
    tiles = race_cmd(
        "tiles",
        "cut the course's area out of a tile archive into the race's "
        "own basemap (a PMTiles file the publisher uploads once)",
    )
    tiles.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="SOURCE",
        help="a PMTiles (v3) archive or an MBTiles file, raster or vector",
    )
    tiles.add_argument(
        "--zooms",
        type=_zooms,
        default="10-17",
        help="the zoom levels to keep, e.g. 10-17 (default)",
    )
    tiles.add_argument(
        "--margin-m",
        type=_positive,
        default=1500.0,
        help="metres of map around the course (default 1500)",
    )
    tiles.add_argument(
        "--out",
        help="where to write it (default: the race's basemap, else NAME.pmtiles beside the config)",
    )
    serve = race_cmd("serve", "serve a dir: sink on 127.0.0.1 with CDN-like headers")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    demo = sub.add_parser(
        "demo",
        help="the founding race on a throwaway PostgreSQL",
        description="the founding race on a throwaway PostgreSQL: "
        "simulated racers, the publisher, and the page on 127.0.0.1",
        parents=[common],
    )
    demo.add_argument(
        "--port", type=_port, default=None, help="port for the page (default: a free one)"
    )
    demo.add_argument(
        "--speed",
        type=_positive,
        default=1.0,
        help="the simulated race runs this many times faster (default 1)",
    )
    return p


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number 1..65535") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port number 1..65535")
    return value


# A host name as RFC 1123 allows (labels of letters, digits and '-').
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def _host(text: str) -> str:
    """An IP address, or a host name (not all digits and dots: 999.1.1.1 is
    a mistyped address, not a name)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(text) or re.fullmatch(r"[\d.]+", text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name"
        )
    return text


def _zooms(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        zooms = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected zooms like 10-17") from None
    if not 0 <= zooms[0] <= zooms[1] <= 24:
        raise argparse.ArgumentTypeError(f"{text!r}: expected zooms 0..24, low-high")
    return zooms


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    configure(args.verbose, args.log_format)
    try:
        return _dispatch(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except RacepubError as e:
        print(f"racepub: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .commands.demo import demo

        demo(port=args.port, speed=args.speed)
        return 0

    from . import config

    cfg = config.load(args.config)
    race = cfg.race(args.race)
    if args.command == "run":
        from .publisher.cycle import Publisher
        from .publisher.lock import RaceLock
        from .publisher.loop import run_forever, run_once
        from .publisher.metrics import Metrics
        from .publisher.statefile import default_dir

        state_dir = _state_dir(Path(args.state_dir) if args.state_dir else default_dir(), args)
        # Listening first: a port or address that cannot be had fails before
        # the state is loaded.
        metrics = Metrics()
        if args.metrics_port is not None and not args.once:
            metrics.serve(args.metrics_port, args.metrics_host)
        publisher = Publisher(cfg, race, state_dir=state_dir)
        if args.once:
            try:
                return 0 if run_once(publisher) else 1
            finally:
                publisher.close()
        run_forever(
            publisher,
            lock=RaceLock(cfg.dsn, race.id),
            metrics=metrics,
            keep_running=args.keep_running,
        )
        return 0
    if args.command == "status":
        from .commands.status import status

        return 0 if status(cfg, race) else 1
    if args.command == "check" and args.cdn:
        from .commands.cdncheck import check_cdn
        from .sink import open_sink

        sink = open_sink(race.sink, cfg.s3)
        return 0 if check_cdn(race, args.cdn, sink.get) else 1
    if args.command == "check":
        from .commands.check import check

        return 0 if check(cfg, race) else 1
    if args.command == "simulate":
        from .commands.simulate import simulate

        simulate(cfg, race, speed=args.speed)
        return 0
    if args.command == "tiles":
        from .commands.tiles import cut
        from .model.course import load_gpx

        out = Path(args.out) if args.out else race.basemap or cfg.path.parent / f"{race.id}.pmtiles"
        done = cut(Path(args.source), out, load_gpx(race.course), args.zooms, args.margin_m)
        print(
            f"{out}: {done.tiles:,} {done.tile_type} tiles, zooms {done.zooms[0]}-"
            f"{done.zooms[1]}, {done.bytes / 1e6:.1f} MB ({done.missing:,} of the area's "
            "tiles not in the source)"
        )
        if race.basemap is None or race.basemap.resolve() != out.resolve():
            print(f'add to [races.{race.id}] in {cfg.path}:\n  basemap = "{out}"')
        return 0
    if args.command == "serve":
        from .commands.serve import make_server

        if not race.sink.startswith("dir:"):
            raise UsageError(
                f"{cfg.path}: races.{race.id}.sink = {race.sink!r}: serve needs a dir: sink"
            )
        server = make_server(Path(race.sink[4:]), race.interval_s, args.port)
        print(f"Serving {race.sink} at http://127.0.0.1:{server.server_address[1]}/", flush=True)
        server.serve_forever()
        return 0
    raise UsageError(f"racepub: unknown command {args.command}")


def _state_dir(path: Path, args: argparse.Namespace) -> Path:
    """The race state's directory: made when missing, so what is there (or
    the nearest thing that is) must be a directory. A file given there made
    the last save, at exit, fail with a traceback."""
    given = "--state-dir" if args.state_dir else "the state directory"
    there = path
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        at = "" if there == path else f" ({there} is not)"
        raise UsageError(
            f"racepub run: {given} {path}: not a directory{at}: expected a directory for "
            "the race state (made if missing; default $RACEPUB_STATE_DIR, $STATE_DIRECTORY "
            "or ~/.local/state/racepub)"
        )
    return path

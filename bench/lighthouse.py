"""Lighthouse (mobile) on the spectator page, beside the previous form's in
the same run: a small race (5 racers, 10 minutes in) published live by this
checkout and by PREVIOUS_COMMIT's code (bench/first_load.py's publisher),
served as the CDN serves it, its map tiles from a local server (one grey
tile, so no score depends on a tile host). Three runs each, medians.

Lighthouse is pinned by bench/lighthouse/package-lock.json and installed
there (npm ci) on first use; it drives Debian's Chromium.

    python -m bench.lighthouse               # prints JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.first_load import publish, served
from bench.marathon import PREVIOUS_COMMIT, ROOT, old_tree

HERE = ROOT / "bench" / "lighthouse"
RUNS = 3
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
CHROMIUM = "/usr/bin/chromium"


def grey_png(size: int = 256) -> bytes:
    """A plain grey tile: a PNG made by hand (8-bit greyscale, one colour)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xdd" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


@contextlib.contextmanager
def tile_server() -> Iterator[str]:
    """Any path answered with the grey tile, cacheable: its URL template."""
    tile = grey_png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.send_header("Cache-Control", "public, max-age=86400")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    finally:
        server.shutdown()


def lighthouse_bin() -> Path:
    binary = HERE / "node_modules" / ".bin" / "lighthouse"
    if not binary.exists():
        if shutil.which("npm") is None:
            sys.exit("bench lighthouse: npm is needed (apt-get install npm)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True)
    return binary


def audit(binary: Path, url: str, out: Path) -> dict[str, Any]:
    """One Lighthouse run (mobile, its default): scores 0..100 and what
    held the first paint."""
    subprocess.run(
        [
            str(binary),
            url,
            "--quiet",
            "--output=json",
            f"--output-path={out}",
            f"--only-categories={','.join(CATEGORIES)}",
            "--chrome-flags=--headless --no-sandbox --disable-gpu",
        ],
        check=True,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
        capture_output=True,
    )
    report = json.loads(out.read_text())
    audits = report["audits"]
    blocking = audits.get("render-blocking-resources", {}).get("details", {}).get("items", [])
    return {
        **{c: round(report["categories"][c]["score"] * 100) for c in CATEGORIES},
        "cls": audits["cumulative-layout-shift"]["numericValue"],
        "lcp_ms": audits["largest-contentful-paint"]["numericValue"],
        "blocking": sorted({item["url"].rsplit("/", 1)[-1] for item in blocking}),
    }


def measure() -> list[dict[str, Any]]:
    from racepub.commands.localdb import LocalPostgres

    binary = lighthouse_bin()
    work = Path(tempfile.mkdtemp(prefix="racepub-lighthouse-"))
    work.chmod(0o711)
    db = LocalPostgres(work / "pg")
    dsn = db.start()
    out = []
    try:
        with tile_server() as tiles, old_tree(PREVIOUS_COMMIT) as tree:
            for form, code in (("new", None), ("previous", tree)):
                if form == "previous" and code is None:
                    continue
                home = work / form
                home.mkdir()
                root = publish(dsn, home, 5, 600, 2.0, 30.0, code, tiles=tiles)
                with served(root) as base:
                    runs = [audit(binary, base, work / f"{form}-{k}.json") for k in range(RUNS)]
                median = {c: statistics.median(r[c] for r in runs) for c in CATEGORIES}
                out.append(
                    {
                        "form": form,
                        "runs": runs,
                        **median,
                        "cls": statistics.median(r["cls"] for r in runs),
                        "lcp_ms": statistics.median(r["lcp_ms"] for r in runs),
                        "blocking": runs[-1]["blocking"],
                    }
                )
    finally:
        db.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return out


def markdown(cells: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Lighthouse (mobile)",
        "",
        "bench/lighthouse.py: Lighthouse 12 (bench/lighthouse/package-lock.json) on the page "
        "of a small race 10 minutes in (5 racers), published and served as in the first-load "
        "section, map tiles from a local server; this code and the previous form in the same "
        f"run, the median of {RUNS} runs each. `python -m bench.lighthouse`.",
        "",
        "| form | performance | accessibility | best practices | SEO | layout shift "
        "| LCP ms | render-blocking |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in cells:
        out.append(
            f"| {'this code' if c['form'] == 'new' else 'previous form'} | "
            f"{c['performance']:.0f} | {c['accessibility']:.0f} | {c['best-practices']:.0f} | "
            f"{c['seo']:.0f} | {c['cls']:.3f} | {c['lcp_ms']:,.0f} | "
            f"{', '.join(c['blocking']) or 'none'} |"
        )
    new = next((c for c in cells if c["form"] == "new"), None)
    if new is not None:
        ok = new["performance"] >= 95 and new["accessibility"] >= 100
        ok = ok and new["best-practices"] >= 96 and new["cls"] < 0.1
        out += [
            "",
            "- Goal: performance >= 95, accessibility 100, best practices >= 96, "
            f"layout shift < 0.1: {'met' if ok else '**not met**'}",
        ]
    return out + [""]


if __name__ == "__main__":
    print(json.dumps(measure()))

"""Where the page's templates and static files are: inside the installed
package (a wheel carries them there), else at the top of a source checkout."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"racepub's {name}/ directory is missing from the installation")


def templates_dir() -> Path:
    return _find("templates")


def static_dir() -> Path:
    return _find("static")


def _source(rel: Path) -> bool:
    """The page's modules (static/js): the page loads their bundle, app.js."""
    return rel.parts[0] == "js"


@cache
def static_files() -> tuple[str, dict[str, bytes]]:
    """(content hash, {relative path: bytes}) of every static file.

    The hash covers every file, so a new release gets a new static/<hash>/
    prefix: assets can be cached for a year and relative URLs inside the
    CSS (Leaflet's images) keep working.
    """
    root = static_dir()
    files = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and not _source(p.relative_to(root))
    }
    h = hashlib.sha256()
    for rel, body in files.items():
        h.update(rel.encode() + b"\0" + hashlib.sha256(body).digest())
    return h.hexdigest()[:12], files

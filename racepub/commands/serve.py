"""`racepub serve`: a directory sink on 127.0.0.1 with the headers S3/CloudFront send."""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import objects
from ..errors import listening
from ..objects import gzip_bytes
from ..sink import digest

log = logging.getLogger(__name__)


def make_server(
    root: Path, interval_s: int, port: int = 8000, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "racepub"
        sys_version = ""

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def _serve(self, head: bool) -> None:
            key = _key(self.path)
            path = (root / key).resolve() if key is not None else None
            if path is None or not path.is_relative_to(root.resolve()) or not path.is_file():
                self.send_error(404, "Not Found")
                return
            body = path.read_bytes()
            obj = objects.make(key or "", body, interval_s)
            etag = f'"{digest(body)[:32]}"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            wanted = _range(self.headers.get("Range"), len(body))
            if wanted is not None and not obj.compressible:  # a large race's packs
                start, end = wanted
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                body = body[start : end + 1]
            else:
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", obj.content_type)
            self.send_header("Cache-Control", obj.cache_control)
            self.send_header("ETag", etag)
            if obj.compressible and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip_bytes(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    with listening(host, port):
        server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def _key(path: str) -> str | None:
    """The object key a URL path asks for (the root is index.html)."""
    p = unquote(urlsplit(path).path)
    norm = posixpath.normpath(p).lstrip("/")
    if norm in ("", "."):
        return objects.PAGE
    if norm.startswith("..") or "\0" in norm:
        return None
    return norm


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), clipped to
    the body; None to send it whole (none asked, or one we do not serve)."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    if m.group(1) == "":
        start, end = max(0, size - int(m.group(2))), size - 1
    else:
        start = int(m.group(1))
        end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
    return (start, end) if start <= end else None


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread

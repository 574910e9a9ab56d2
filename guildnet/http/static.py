"""The browser UI: the Vite build in ``guildnet/web/``, served from the Host App's origin.

``StaticUI`` is a leaf ``twisted.web`` resource that maps the request path onto files of one
directory:

* ``/`` and ``/index.html``: the app shell, ``Cache-Control: no-cache`` so a new build is
  picked up at once. Without a build, a small page says how to make one (``make ui``).
* ``/assets/<name>``: Vite's content-hashed files, cached for a year (``immutable``).
* anything else that is a file in the directory: cached for an hour.
* a path with no file: 404 JSON like every other Host App error; with ``spa_fallback``,
  extension-less paths outside ``/api``, ``/sse`` and ``/proxy`` get the app shell instead
  (for history-mode routes; the UI uses hash routes, so the Host App leaves it off).

Paths never leave the directory: ``..``, empty, hidden (dot) and NUL segments are refused
before any file-system access, and the resolved path (symlinks followed) must still be
inside the resolved root. Responses carry an ETag (304 on ``If-None-Match``) and are
gzip-encoded for clients that accept it; file contents are cached in memory and re-read
when the file's size or mtime changes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Final
from urllib.parse import unquote

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from guildnet.http.errors import error_body

WEB_DIR: Final = Path(__file__).resolve().parent.parent / "web"

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".webmanifest": "application/manifest+json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".txt": "text/plain; charset=utf-8",
    ".wasm": "application/wasm",
}
COMPRESSIBLE: Final = frozenset(
    {".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".txt", ".webmanifest", ".ico"}
)
GZIP_MIN_BYTES: Final = 1024
MAX_FILE_BYTES: Final = 32 * 1024 * 1024
CACHE_IMMUTABLE: Final = b"public, max-age=31536000, immutable"
CACHE_SHORT: Final = b"public, max-age=3600"
CACHE_NONE: Final = b"no-cache"
NO_FALLBACK_PREFIXES: Final = ("api", "sse", "proxy", "assets")

NOT_BUILT_PAGE: Final = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>GuildNet: UI not built</title></head>
<body>
<h1>The GuildNet UI is not built</h1>
<p>The Host App is running and its API answers under <code>/api/</code>, but the browser UI
has not been built into <code>guildnet/web/</code>.</p>
<p>Build it from the repository root (needs Node.js 20.19+ and npm):</p>
<pre>make ui</pre>
<p>which runs <code>cd ui &amp;&amp; npm ci &amp;&amp; npm run build</code>.
Then reload this page.</p>
</body>
</html>
"""


@attrs.frozen
class _Cached:
    mtime_ns: int
    size: int
    body: bytes
    gzipped: bytes | None
    etag: bytes


class StaticUI(Resource):
    """Serves the files of ``root`` (see the module docstring)."""

    isLeaf = True

    def __init__(self, root: Path = WEB_DIR, *, spa_fallback: bool = False) -> None:
        super().__init__()
        self.root = root
        self.spa_fallback = spa_fallback
        self._cache: dict[Path, _Cached] = {}

    # twisted.web ---------------------------------------------------------------------------

    def render_GET(self, request: IRequest) -> bytes:
        segments = _segments(request.path)
        if segments is None:
            return self._not_found(request)
        if segments in ([], ["index.html"]):
            return self._index(request)
        path = self._resolve(segments)
        if path is not None:
            cache = CACHE_IMMUTABLE if segments[0] == "assets" else CACHE_SHORT
            return self._file(request, path, cache)
        if self.spa_fallback and _is_ui_route(segments):
            return self._index(request)
        return self._not_found(request)

    # HEAD: twisted.web answers it with render_GET's headers and no body.

    # parts ---------------------------------------------------------------------------------

    def _index(self, request: IRequest) -> bytes:
        return self.page(request, "index.html")

    def page(self, request: IRequest, name: str) -> bytes:
        """A top-level HTML page of the build (``no-cache``), or 503 saying how to build it."""
        index = self._resolve([name])
        if index is None:
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return NOT_BUILT_PAGE
        return self._file(request, index, CACHE_NONE)

    def _resolve(self, segments: list[str]) -> Path | None:
        """The regular file at ``segments`` inside the root (symlinks resolved), or None."""
        try:
            root = self.root.resolve(strict=True)
            path = root.joinpath(*segments).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if not path.is_relative_to(root) or path == root or not path.is_file():
            return None
        return path

    def _load(self, path: Path) -> _Cached | None:
        try:
            st = path.stat()
        except OSError:
            return None
        cached = self._cache.get(path)
        if cached is not None and (cached.mtime_ns, cached.size) == (st.st_mtime_ns, st.st_size):
            return cached
        if st.st_size > MAX_FILE_BYTES:
            return None
        try:
            body = path.read_bytes()
        except OSError:
            return None
        gz = None
        if path.suffix.lower() in COMPRESSIBLE and len(body) >= GZIP_MIN_BYTES:
            gz = gzip.compress(body, compresslevel=6, mtime=0)
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        cached = _Cached(st.st_mtime_ns, st.st_size, body, gz, etag)
        self._cache[path] = cached
        return cached

    def _file(self, request: IRequest, path: Path, cache_control: bytes) -> bytes:
        cached = self._load(path)
        if cached is None:
            return self._not_found(request)
        ctype = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        request.setHeader(b"content-type", ctype.encode())
        request.setHeader(b"cache-control", cache_control)
        request.setHeader(b"etag", cached.etag)
        if cached.gzipped is not None:
            request.setHeader(b"vary", b"Origin, Accept-Encoding")
        if _etag_matches(request.getHeader(b"if-none-match"), cached.etag):
            request.setResponseCode(304)
            return b""
        body = cached.body
        if cached.gzipped is not None and _accepts_gzip(request.getHeader(b"accept-encoding")):
            request.setHeader(b"content-encoding", b"gzip")
            body = cached.gzipped
        request.setHeader(b"content-length", str(len(body)).encode())
        return body

    @staticmethod
    def _not_found(request: IRequest) -> bytes:
        path = request.path.decode("latin-1")[:256]
        return error_body(request, 404, "not_found", f"no file for {path}")


def _segments(raw_path: bytes) -> list[str] | None:
    """URL path -> safe path segments, or None when the path must not be served."""
    try:
        path = unquote(raw_path.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    if "\0" in path or "\\" in path:
        return None
    parts = path.split("/")
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]  # "/assets/" -> ["assets"]
    for part in parts:
        if part in ("", ".", "..") or part.startswith(".") or os.sep in part:
            return None
    return parts


def _is_ui_route(segments: list[str]) -> bool:
    return bool(segments) and segments[0] not in NO_FALLBACK_PREFIXES and "." not in segments[-1]


def _etag_matches(header: bytes | None, etag: bytes) -> bool:
    if not header:
        return False
    if header.strip() == b"*":
        return True
    tags = [t.strip().removeprefix(b"W/") for t in header.split(b",")]
    return etag in tags


def _accepts_gzip(header: bytes | None) -> bool:
    if not header:
        return False
    for item in header.lower().split(b","):
        coding, _, params = item.strip().partition(b";")
        if coding.strip() not in (b"gzip", b"*"):
            continue
        q = params.strip()
        return not (q.startswith(b"q=") and _q_zero(q[2:]))
    return False


def _q_zero(value: bytes) -> bool:
    try:
        return float(value) == 0.0
    except ValueError:
        return False

"""Cross-site request forgery: which mutating requests a browser may not make. Pure.

With network identity, any page the user visits could make their browser call the
Host App as them. The rule is Go's ``net/http.CrossOriginProtection``:

* GET, HEAD and OPTIONS are never refused (they must not change anything);
* ``Sec-Fetch-Site: same-origin`` or ``none`` (typed URL, bookmark) passes; any other
  value (``cross-site``, ``same-site``: another subdomain or port is another origin) is
  refused unless ``Origin`` is a trusted origin (``FRONTEND_ORIGIN``);
* without ``Sec-Fetch-Site`` (older browsers), an ``Origin`` whose host[:port] is not
  the request's ``Host`` is refused unless trusted;
* with neither header the request is not from a browser page (curl, scripts) or is a
  same-origin request of a browser that sends neither: allowed;
* except for a route that acts on an HTML form's post (``form``): a plain form on any
  site can post one, and browsers that send no ``Sec-Fetch-Site`` did not always send
  ``Origin`` with it, so a form post without ``Origin`` is refused.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit

SAFE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS"})
_PASSING_SITES: Final = frozenset({b"same-origin", b"none"})
FORM_TYPE: Final = b"application/x-www-form-urlencoded"


def is_form(content_type: bytes | None) -> bool:
    """Whether a body is an HTML form's (``application/x-www-form-urlencoded``)."""
    return (content_type or b"").split(b";")[0].strip().lower() == FORM_TYPE


def cross_origin_refusal(
    method: bytes,
    sec_fetch_site: bytes | None,
    origin: bytes | None,
    host: bytes | None,
    trusted: Collection[str] = (),
    *,
    form: bool = False,
) -> str | None:
    """Why the request is refused as cross-origin, or None when it may go on.

    ``form``: the request is a form post to a route that acts on one: it must say where
    it comes from (``Origin``), whatever else it sends.
    """
    if method.upper() in SAFE_METHODS:
        return None
    origin_text = origin.decode("latin-1").strip() if origin is not None else None
    if form and origin_text is None:
        return "a form post must say where it comes from (Origin)"
    if origin_text is not None and origin_text.lower() in trusted:
        return None
    if sec_fetch_site is not None:
        site = sec_fetch_site.strip().lower()
        if site in _PASSING_SITES:
            return None
        return f"a {site.decode('latin-1')[:20]} request may not change anything here"
    if origin_text is None:
        return None
    if host is not None and _origin_host(origin_text) == host.decode("latin-1").strip().lower():
        return None
    return f"origin {origin_text[:100]} may not change anything here"


def _origin_host(origin: str) -> str | None:
    """host[:port] of an origin, lower-case; None for ``null`` and other non-URLs."""
    try:
        parts = urlsplit(origin)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()

"""The small HTML pages the proxy answers instead of a workspace that cannot serve now.

A browser opening a stopped workspace gets a page that says so and offers to start it
(a form POSTing to the start route on the Host App's own origin, which answers with a
redirect back here); one opening a workspace that is starting gets a page that reloads
itself every few seconds until the workspace answers. API clients (no ``text/html`` in
Accept) get the same information as JSON. Pure functions: text in, bytes out.
"""

from __future__ import annotations

from html import escape
from typing import Final

REFRESH_S: Final = 3
#: The pages carry no script and load nothing; forms may only post to this origin.
PAGE_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;"
    "color:#1e293b}h1{font-size:1.4rem}p{line-height:1.5}.msg{color:#475569}"
    "button{font-size:1rem;padding:.5rem 1.2rem;border-radius:.4rem;border:1px solid #0d9488;"
    "background:#0d9488;color:#fff;cursor:pointer}"
)


def wants_html(accept: bytes | None) -> bool:
    """A browser navigation (Accept names text/html), not an API or asset request."""
    return accept is not None and b"text/html" in accept.lower()


def _page(title: str, body: str, refresh: bool = False) -> bytes:
    head = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    ).encode()


def stopped_page(name: str, start_url: str, message: str) -> bytes:
    """The page for a stopped workspace: what happened, and a button to start it."""
    return _page(
        f"{name} is stopped",
        f"<h1>Workspace <code>{escape(name)}</code> is stopped</h1>"
        f'<p class="msg">{escape(message)}</p>'
        "<p>Its files and password are kept. Starting it takes a few seconds; this page "
        "then opens the workspace.</p>"
        f'<form method="post" action="{escape(start_url, quote=True)}">'
        '<button type="submit">Start workspace</button></form>',
    )


def stopped_elsewhere_page(name: str, ui_url: str, message: str) -> bytes:
    """The stopped page on a workspace's own origin (subdomain mode): no start form.

    A form there would POST to the Host App from the workspace's origin, which the Host
    App refuses from every workspace page (see ``origins.host_app_refusal``); the page
    sends the user to the workspace in the UI instead (the whole window, not the frame).
    """
    return _page(
        f"{name} is stopped",
        f"<h1>Workspace <code>{escape(name)}</code> is stopped</h1>"
        f'<p class="msg">{escape(message)}</p>'
        "<p>Its files and password are kept. Start it from GuildNet: "
        f'<a href="{escape(ui_url, quote=True)}" target="_top">open {escape(name)} in '
        "GuildNet</a>.</p>",
    )


def own_origin_csp(frame_ancestors: str) -> str:
    """``PAGE_CSP`` for a page on a workspace's own origin, framed by the Host App."""
    return PAGE_CSP.replace("frame-ancestors 'self'", frame_ancestors)


def starting_page(name: str, phase: str, message: str) -> bytes:
    """The page for a workspace that is not ready yet: reloads itself until it is."""
    return _page(
        f"{name} is starting",
        f"<h1>Workspace <code>{escape(name)}</code> is starting</h1>"
        f'<p class="msg">{escape(phase)}: {escape(message)}</p>'
        f"<p>This page reloads every {REFRESH_S} seconds until the workspace answers.</p>",
        refresh=True,
    )

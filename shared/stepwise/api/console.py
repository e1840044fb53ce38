"""The web console: static pages served at ``/`` (and ``/console/<file>``). The reads the pages need beyond
the run/thread API (an agent version's compiled graph, agent stats) are routes in ``routes/console.py``.

Why the pages go through the API handler and not the ASGI server: the same handler runs behind API
Gateway, so the console deploys with the API (same pages, same routes, same auth). The pages are
public (they hold no data); every data request carries the API key the user typed in, like any client.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

STATIC = Path(__file__).with_name("console_static")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Only our own files, no inline script, no framing: the pages hold the API key in sessionStorage.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _files() -> dict[str, tuple[str, str]]:
    """name -> (text, content type), read once: a fixed set, so a path can never leave the folder."""
    return {p.name: (p.read_text(encoding="utf-8"), TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in TYPES}


def static_response(method: str, path: str) -> dict[str, Any] | None:
    """The proxy response for a console page or asset, or None when ``path`` is not the console's."""
    if method not in ("GET", "HEAD"):
        return None
    if path in ("/", "/console"):  # the page's relative links resolve to <root>/console/… from both
        name = "index.html"
    elif path.startswith("/console/"):
        name = path[len("/console/") :]
    else:
        return None
    found = _files().get(name) if name != "index.html" or path in ("/", "/console") else None  # at /console/ its links would miss
    if found is None:
        message = "the console's page is at / (or /console)" if name in ("", "index.html") else f"no console file {name!r}"
        body = json.dumps({"error": {"code": "not_found", "message": message}})
        return {"statusCode": 404, "headers": {"Content-Type": "application/json"}, "body": body, "isBase64Encoded": False}
    text, content_type = found
    return {
        "statusCode": 200,
        "headers": {"Content-Type": content_type, **SECURITY_HEADERS},
        "body": "" if method == "HEAD" else text,
        "isBase64Encoded": False,
    }

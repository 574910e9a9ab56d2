"""The optional plain-HTTP listener (``METRICS_LISTEN``): ``GET /metrics`` and nothing else.

For local scrapers that do not speak TLS or trust the Host App's certificate. It shares
the HTTPS listener's exposition; scrapes are not access-logged (one line every few
seconds per scraper would drown the log).
"""

from __future__ import annotations

from typing import Any

from twisted.web import server
from twisted.web.resource import Resource

from guildnet.http.errors import error_body
from guildnet.metrics.exposition import Exposition


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, exposition: Exposition) -> None:
        super().__init__()
        self.exposition = exposition

    def render(self, request: Any) -> bytes:
        from guildnet.http.api import metrics_response

        if request.path != b"/metrics":
            return error_body(request, 404, "not_found", "this listener serves only /metrics")
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return error_body(request, 405, "method_not_allowed", "use GET")
        return metrics_response(request, self.exposition)


class MetricsSite(server.Site):
    displayTracebacks = False

    def __init__(self, exposition: Exposition) -> None:
        super().__init__(MetricsResource(exposition))
        self.noisy = False

    def log(self, request: Any) -> None:
        pass

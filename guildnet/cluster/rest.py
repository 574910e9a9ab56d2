"""Raw JSON access to the Kubernetes API over the client's authenticated pool.

The generated client turns objects into models; GuildNet's decisions work on
plain JSON dicts (what the API server sends and what server-side apply
takes), so this layer speaks JSON and reuses only the client's URL building,
authentication (including token refresh) and connection pool. Blocking: call
it from an Instance thread pool.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import urllib3
from kubernetes import client

from guildnet.metrics import kube as M

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"


# YAML (the apply-patch content type) forbids raw control characters and JSON's surrogate-pair
# escapes, so escape exactly the characters outside YAML's printable set, and the line breaks
# NEL/LS/PS that YAML would fold inside a quoted string, and keep the rest raw.
_NOT_YAML_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def apply_body(manifest: Mapping[str, Any]) -> bytes:
    """Encode a manifest for a server-side apply PATCH (``application/apply-patch+yaml``).

    Plain ``json.dumps`` breaks on characters outside the Basic Multilingual Plane (their
    ``\\ud83d\\ude00`` escapes are invalid YAML); raw UTF-8 breaks on control characters.
    """
    text = json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))
    text = _NOT_YAML_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode()


class KubeApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str, body: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


def _query(query: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in (query or {}).items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        out.append((k, str(v)))
    return out


class KubeRest:
    def __init__(self, api_client: client.ApiClient, cluster_id: str = "") -> None:
        self.api_client = api_client
        #: The ``cluster`` label of this client's calls in /metrics.
        self.cluster_id = cluster_id

    def _prepare(
        self, method: str, path: str, query: Mapping[str, Any] | None, content_type: str | None
    ) -> tuple[str, dict[str, str]]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, headers_out, _, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=_query(query),
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        return url, dict(headers_out)

    def open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | tuple[float, float] = 30.0,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request and return the unread response (the caller closes it)."""
        url, headers = self._prepare(method, path, query, content_type)
        t = (
            urllib3.Timeout(connect=timeout[0], read=timeout[1])
            if isinstance(timeout, tuple)
            else urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
        )
        verb, resource = M.verb_and_resource(method, path, query)
        started = time.monotonic()
        try:
            resp = self.api_client.rest_client.pool_manager.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=t,
                preload_content=False,
                retries=False,
            )
        except BaseException:
            M.observe(self.cluster_id, verb, resource, "error", time.monotonic() - started)
            raise
        M.observe(self.cluster_id, verb, resource, str(resp.status), time.monotonic() - started)
        if resp.status >= 400:
            data = resp.read()
            resp.release_conn()
            raise _error(resp.status, resp.reason or "", data)
        return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """Send JSON (or YAML for apply), return the decoded JSON answer."""
        if body is None:
            raw = None
        elif content_type == APPLY_PATCH:
            raw = apply_body(body)
        else:
            raw = json.dumps(body).encode()
        resp = self.open(
            method,
            path,
            query=query,
            body=raw,
            content_type=content_type if raw is not None else None,
            timeout=timeout,
        )
        try:
            data = resp.read()
        finally:
            resp.release_conn()
        return json.loads(data) if data else None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def apply(
        self, path: str, manifest: Mapping[str, Any], field_manager: str, force: bool = True
    ) -> Any:
        """Server-side apply of ``manifest`` at ``path`` (the object's own URL)."""
        return self.request(
            "PATCH",
            path,
            body=manifest,
            content_type=APPLY_PATCH,
            query={"fieldManager": field_manager, "force": force},
        )

    def delete(self, path: str, propagation: str = "Background") -> Any:
        return self.request("DELETE", path, body={"propagationPolicy": propagation})


def _error(status: int, reason: str, data: bytes) -> KubeApiError:
    try:
        body = json.loads(data)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or data[:200].decode("utf-8", "replace"))
    return KubeApiError(status, str(body.get("reason") or reason), message, body)


def object_path(
    api_version: str,
    plural: str,
    name: str | None = None,
    namespace: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/api/v1/...`` or ``/apis/<group>/<version>/...`` for a collection or object."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts: Sequence[str] = [base]
    if namespace:
        parts = [*parts, "namespaces", namespace]
    parts = [*parts, plural]
    if name:
        parts = [*parts, name]
    if subresource:
        parts = [*parts, subresource]
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))

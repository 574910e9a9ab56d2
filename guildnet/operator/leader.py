"""Leader election on a coordination.k8s.io Lease, so one Host App reconciles.

Several Host Apps may point at one cluster. Each tries every
``retry_period`` seconds to acquire or renew the Lease; the holder renews
it, and a Lease not renewed for ``lease_duration`` seconds may be taken
over. Updates use the Lease's resourceVersion (optimistic concurrency), so
two candidates can never both win one round.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import uuid
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from guildnet.cluster.rest import KubeApiError, KubeRest

log = Logger()

LEASE_DURATION = 15
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _fmt(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    text = value.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        return None


def lease_expired(spec: dict[str, Any], now: datetime.datetime) -> bool:
    """Whether a Lease's holder has failed to renew within its duration."""
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    if renewed is None or not spec.get("holderIdentity"):
        return True
    duration = int(spec.get("leaseDurationSeconds") or LEASE_DURATION)
    return (now - renewed).total_seconds() > duration


class LeaderElector(Service):
    """Calls ``on_started`` when this process becomes leader, ``on_stopped`` when it stops."""

    def __init__(
        self,
        call: Callable[..., Deferred[Any]],
        rest: Callable[[], KubeRest],
        namespace: str,
        name: str,
        on_started: Callable[[], None],
        on_stopped: Callable[[], None],
        reactor: Any,
        identity: str | None = None,
        lease_duration: int = LEASE_DURATION,
        retry_period: float = RETRY_PERIOD,
    ) -> None:
        self._call = call
        self._rest = rest
        self.namespace = namespace
        self.lease_name = name
        self.identity = identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.lease_duration = lease_duration
        self.retry_period = retry_period
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._reactor = reactor
        self.is_leader = False
        self._last_renew = 0.0
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._busy = False

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.lease_name}"

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.retry_period, now=True)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        was_leader = self.is_leader
        self._lose()
        if was_leader:
            # Release so another Host App takes over at once, not after expiry.
            return self._call(self._release).addErrback(lambda f: None)
        return None

    def _lose(self) -> None:
        if self.is_leader:
            self.is_leader = False
            log.info("lost leadership of {lease}", lease=self.lease_name)
            self._on_stopped()

    @inlineCallbacks
    def _tick(self) -> Any:
        if self._busy:
            return
        self._busy = True
        try:
            won = yield self._call(self._try_acquire_or_renew)
        except Exception as e:
            log.warn("lease {lease}: {error}", lease=self.lease_name, error=str(e)[:200])
            won = None
        finally:
            self._busy = False
        if not self.running:
            return
        now = self._reactor.seconds()
        if won:
            self._last_renew = now
            if not self.is_leader:
                self.is_leader = True
                log.info(
                    "became leader of {lease} as {id}", lease=self.lease_name, id=self.identity
                )
                self._on_started()
        elif (self.is_leader and now - self._last_renew > RENEW_DEADLINE) or (
            self.is_leader and won is False
        ):
            self._lose()

    def _try_acquire_or_renew(self) -> bool:
        """One round: True if we hold the Lease afterwards. Blocking."""
        rest = self._rest()
        now = _now()
        try:
            lease = rest.get(self.path)
        except KubeApiError as e:
            if not e.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.lease_name,
                    "namespace": self.namespace,
                    "labels": {"app.kubernetes.io/managed-by": "guildnet"},
                },
                "spec": self._spec(now, acquire=now, transitions=0),
            }
            try:
                rest.request("POST", self.path.rsplit("/", 1)[0], body=body)
            except KubeApiError as e2:
                if e2.conflict:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder != self.identity and not lease_expired(spec, now):
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquire = _parse(spec.get("acquireTime")) or now
        else:
            acquire, transitions = now, transitions + 1
        lease["spec"] = self._spec(now, acquire=acquire, transitions=transitions)
        try:
            rest.request("PUT", self.path, body=lease)  # carries resourceVersion
        except KubeApiError as e:
            if e.conflict:
                return False
            raise
        return True

    def _spec(
        self, now: datetime.datetime, acquire: datetime.datetime, transitions: int
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration,
            "acquireTime": _fmt(acquire),
            "renewTime": _fmt(now),
            "leaseTransitions": transitions,
        }

    def _release(self) -> None:
        rest = self._rest()
        try:
            lease = rest.get(self.path)
        except KubeApiError:
            return
        spec = lease.get("spec") or {}
        if spec.get("holderIdentity") != self.identity:
            return
        spec["holderIdentity"] = ""
        spec["renewTime"] = None
        lease["spec"] = spec
        with contextlib.suppress(KubeApiError):
            rest.request("PUT", self.path, body=lease)

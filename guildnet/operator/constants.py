"""Names shared by the CRD, the operator and the API, kept in one place so they never drift."""

from __future__ import annotations

from typing import Final

GROUP: Final = "guildnet.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
PLURAL: Final = "workspaces"
SINGULAR: Final = "workspace"
KIND: Final = "Workspace"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
FIELD_MANAGER: Final = "guildnet-operator"

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "guildnet"
LABEL_WORKSPACE: Final = "guildnet.io/workspace"
LABEL_NAME: Final = "app.kubernetes.io/name"
# On a home volume kept by ``DELETE /api/servers/{id}?keep_volume=true``.
LABEL_KEPT: Final = "guildnet.io/kept"
APP_NAME: Final = "workspace"

ANNOTATION_DESIRED_HASH: Final = "guildnet.io/desired-hash"
# On the Deployment (not its pod template, so it never rolls pods): the Workspace generation
# the Deployment was built from, so status can tell "Running the current spec" from "old spec".
ANNOTATION_GENERATION: Final = "guildnet.io/workspace-generation"

# On the Workspace, set together with ``spec.stopped`` by whoever stops it (the API, the idle
# culler): ``<Reason>`` or ``<Reason>: <message>``; the status' Stopped condition shows it.
ANNOTATION_STOP_REASON: Final = "guildnet.io/stop-reason"
STOP_USER_REQUESTED: Final = "UserRequested"
STOP_IDLE: Final = "Idle"
# On the Workspace, set by ``POST /api/servers/{id}/restart``; the operator copies it into
# the pod template annotation ``kubectl.kubernetes.io/restartedAt``, which rolls the pod.
ANNOTATION_RESTARTED_AT: Final = "guildnet.io/restarted-at"
POD_RESTARTED_AT: Final = "kubectl.kubernetes.io/restartedAt"

CONTAINER_NAME: Final = "workspace"
PASSWORD_KEY: Final = "password"


def managed_labels(name: str) -> dict[str, str]:
    """The labels GuildNet puts on everything it creates for workspace ``name``."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: APP_NAME, LABEL_WORKSPACE: name}


def selector_labels(name: str) -> dict[str, str]:
    """The immutable Deployment/Service selector: one workspace, nothing else."""
    return {LABEL_WORKSPACE: name}


def password_secret_name(name: str) -> str:
    return f"{name}-password"


def home_claim_name(name: str) -> str:
    """The workspace's home PersistentVolumeClaim."""
    return f"{name}-home"


def tls_secret_name(name: str) -> str:
    return f"{name}-tls"

"""Throw-away kubeconfigs and unused ports for tests that need a cluster to be unreachable."""

from __future__ import annotations

import socket

SECRET_TOKEN = "kubeconfig-secret-token-4711"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig_text(server: str, token: str = SECRET_TOKEN) -> str:
    """A minimal token kubeconfig for ``server`` (TLS verification off)."""
    return f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: {token}
contexts:
- name: ctx
  context: {{cluster: c, user: u}}
current-context: ctx
"""

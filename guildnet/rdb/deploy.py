"""RethinkDB for a cluster: the manifests (pure) and an idempotent server-side apply.

One StatefulSet (one replica; a PersistentVolumeClaim, or an emptyDir for throw-away data)
and one Service named ``RETHINKDB_SERVICE_NAME`` exposing only the driver port: RethinkDB's
admin HTTP port is always admin, so it is disabled, and the cluster port stays inside the
pod. Non-root, no privilege escalation, all capabilities dropped, read-only root file
system, TCP probes on the driver port, bounded resources (the cache is sized to the limit).

``etc/k8s/rethinkdb.yaml`` is this module's rendering with the defaults (a unit test keeps
them equal), for ``kubectl apply --server-side -f``. ``make deploy-rethinkdb`` and
``POST /api/cluster/{id}/db/deploy`` apply the same objects with the ``guildnet-rdb`` field
manager: applying twice changes nothing.

    python -m guildnet.rdb.deploy --kubeconfig PATH [--namespace NS] [--name rethinkdb]
                                  [--storage pvc|emptyDir] [--size 1Gi] [--print]
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Final

import yaml

from guildnet.cluster.rest import KubeRest, object_path
from guildnet.operator.images import RETHINKDB_IMAGE

IMAGE: Final = RETHINKDB_IMAGE  # built locally by tests/harness/images (no registry pull)
FIELD_MANAGER: Final = "guildnet-rdb"
DRIVER_PORT: Final = 28015
CLUSTER_PORT: Final = 29015
_SIZE = re.compile(r"^[1-9][0-9]{0,5}(Mi|Gi|Ti)$")


class DeployError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def manifests(
    name: str = "rethinkdb",
    namespace: str | None = "default",
    storage: str = "pvc",
    size: str = "1Gi",
    image: str = IMAGE,
    storage_class: str | None = None,
) -> list[dict[str, Any]]:
    """The Service and StatefulSet, in apply order."""
    if storage not in ("pvc", "emptyDir"):
        raise DeployError("storage", "must be 'pvc' or 'emptyDir'")
    if not _SIZE.fullmatch(size):
        raise DeployError("size", "must be a size like 512Mi or 10Gi")
    labels = {
        "app.kubernetes.io/name": "rethinkdb",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "guildnet",
    }
    selector = {"app.kubernetes.io/name": "rethinkdb", "app.kubernetes.io/instance": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:  # None: the file for ``kubectl apply -n NS``
        meta["namespace"] = namespace
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "driver", "port": DRIVER_PORT, "targetPort": "driver", "protocol": "TCP"}
            ],
        },
    }
    probe = {"tcpSocket": {"port": "driver"}, "timeoutSeconds": 3}
    container = {
        "name": "rethinkdb",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        # Only args (the image's CMD), no command: the image's entrypoint stays. Upstream's
        # rethinkdb image has none (CMD ["rethinkdb", ...]); ours is tini, which reaps
        # rethinkdb's orphaned helper processes and forwards SIGTERM.
        "args": [
            "rethinkdb",
            "--bind",
            "all",
            "--directory",
            "/data/rethinkdb_data",
            "--driver-port",
            str(DRIVER_PORT),
            "--cluster-port",
            str(CLUSTER_PORT),
            "--no-http-admin",
            "--cache-size",
            "512",
            "--server-name",
            name.replace("-", "_"),
        ],
        "ports": [
            {"name": "driver", "containerPort": DRIVER_PORT, "protocol": "TCP"},
            {"name": "cluster", "containerPort": CLUSTER_PORT, "protocol": "TCP"},
        ],
        # Ready soon after the server listens: a Service routes only to Ready pods, so each
        # start (and each restart after a pod is deleted) waits for this probe to pass; with
        # a 10 s period that wait was ~10 s on a real kubelet. A TCP connect every 2 s is free.
        "readinessProbe": {
            **probe,
            "initialDelaySeconds": 1,
            "periodSeconds": 2,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            **probe,
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    spec: dict[str, Any] = {
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "runAsGroup": 1000,
                    "fsGroup": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if storage == "emptyDir":
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": size}})
    else:
        claim: dict[str, Any] = {
            "metadata": {"name": "data", "labels": labels},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        }
        if storage_class:
            claim["spec"]["storageClassName"] = storage_class
        spec["volumeClaimTemplates"] = [claim]
    statefulset = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}
    return [service, statefulset]


def object_url(manifest: dict[str, Any]) -> str:
    plural = {"Service": "services", "StatefulSet": "statefulsets"}[manifest["kind"]]
    meta = manifest["metadata"]
    return object_path(manifest["apiVersion"], plural, meta["name"], meta["namespace"])


def apply_all(rest: KubeRest, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Server-side apply each object (blocking; run it on an Instance pool)."""
    out = []
    for manifest in objects:
        applied = rest.apply(object_url(manifest), manifest, FIELD_MANAGER)
        meta = applied.get("metadata") or {}
        out.append(
            {
                "kind": manifest["kind"],
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "resourceVersion": meta.get("resourceVersion"),
                "generation": meta.get("generation"),
            }
        )
    return out


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared label dicts written out in full, no &anchors


def render_yaml(objects: list[dict[str, Any]]) -> str:
    header = (
        "# Generated by `python -m guildnet.rdb.deploy --print --namespace -` (do not edit;\n"
        "# tests/unit/test_rdb_deploy.py checks it). Apply: kubectl apply --server-side -n NS -f\n"
    )
    return header + "---\n".join(yaml.dump(o, Dumper=_Dumper, sort_keys=False) for o in objects)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m guildnet.rdb.deploy", description=__doc__)
    p.add_argument("--kubeconfig")
    p.add_argument("--namespace", default="default")
    p.add_argument("--name", default="rethinkdb")
    p.add_argument("--storage", default="pvc", choices=["pvc", "emptyDir"])
    p.add_argument("--size", default="1Gi")
    p.add_argument("--image", default=IMAGE)
    p.add_argument("--print", action="store_true", help="print the YAML, apply nothing")
    args = p.parse_args(argv)
    try:
        namespace = None if args.print and args.namespace == "-" else args.namespace
        objects = manifests(args.name, namespace, args.storage, args.size, args.image)
    except DeployError as e:
        print(f"deploy-rethinkdb: {e}", file=sys.stderr)
        return 2
    if args.print:
        sys.stdout.write(render_yaml(objects))
        return 0
    from kubernetes import config

    api = config.new_client_from_config(config_file=args.kubeconfig)
    try:
        for item in apply_all(KubeRest(api), objects):
            print(f"applied {item['kind']} {item['namespace']}/{item['name']}")
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

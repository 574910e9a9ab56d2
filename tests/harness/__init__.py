"""Test harness: a real Kubernetes control plane (etcd, kube-apiserver, kwok) for tests."""

from tests.harness.cluster import ClusterStartError, TestCluster

__all__ = ["ClusterStartError", "TestCluster"]

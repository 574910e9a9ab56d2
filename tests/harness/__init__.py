"""Test harness: a real Kubernetes control plane (etcd, kube-apiserver, kwok) for tests.

Import from `tests.harness.cluster`; this package stays empty so that
`python -m tests.harness.cluster` runs the module without importing it twice.
"""

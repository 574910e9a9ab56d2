"""Test harness: real Kubernetes clusters for tests, built from local binaries.

`tests.harness.cluster` (kwok simulates the node) and `tests.harness.realnode` (a real kubelet,
containerd and kube-proxy) share `controlplane`, `pki` and `processes`. This package stays
empty so that `python -m tests.harness.cluster` (or `.realnode`) runs the module without
importing it twice.
"""

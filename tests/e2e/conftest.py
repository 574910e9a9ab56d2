"""The e2e suite reuses the integration fixtures: one real test cluster per session.

Like tests/integration, it must run inside tests/harness/netns-run.sh.
"""

from tests.integration.conftest import (  # noqa: F401  (fixtures)
    _deleted_namespaces,
    kube_api,
    kubeconfig,
    namespace,
    test_cluster,
)

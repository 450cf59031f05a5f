"""The one place naming the pinned versions of the local control plane toolchain."""

from __future__ import annotations

KUBERNETES_VERSION = "v1.34.4"
# The staging modules (k8s.io/api, k8s.io/client-go, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING_VERSION = "v0.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.0"
# Linters of Kubernetes manifests that `make test` runs on the chart, deploy/ and the objects the
# operator builds (tests/helm/test_manifest_linters.py). Not in versions_key(): each binary's stamp
# names its version, so a bump rebuilds it alone, not the whole toolchain.
KUBE_SCORE_VERSION = "v1.20.0"
KUBECONFORM_VERSION = "v0.7.0"

# The registry's real consumers (devtools/consumers/): the versions their go.mod pins. A unit test
# keeps the two in step.
GRPC_GO_VERSION = "v1.83.2"
ETCD_CLIENT_VERSION = "v3.6.16"
COREDNS_VERSION = "v1.15.0"
CONSUMER_VERSIONS = {
    "grpc-consumer": f"grpc-{GRPC_GO_VERSION}_etcd-client-{ETCD_CLIENT_VERSION}",
    "coredns": COREDNS_VERSION,
}

# The registries' servers and consumers that are not Go programs (devtools/cluster/registry_builds.py):
# r-nacos from crates.io; the Curator consumer's jars are pinned in its pom.xml.
RNACOS_VERSION = "0.8.8"
CURATOR_VERSION = "5.9.0"
NACOS_SDK_PYTHON_VERSION = "3.2.0"

# Bump when the way binaries are built changes (flags, generated modules) so caches are rebuilt.
BUILD_RECIPE = 1

VERSIONS = {
    "kubernetes": KUBERNETES_VERSION,
    "etcd": ETCD_VERSION,
    "kwok": KWOK_VERSION,
    "helm": HELM_VERSION,
    "kube-score": KUBE_SCORE_VERSION,
    "kubeconform": KUBECONFORM_VERSION,
}


def versions_key() -> str:
    """Directory name for one set of pinned versions, e.g. ``k8s-v1.34.4_etcd-v3.6.16_...``."""
    return f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}_helm-{HELM_VERSION}_r{BUILD_RECIPE}"


def kubernetes_major_minor() -> tuple[str, str]:
    major, minor, _patch = KUBERNETES_VERSION.lstrip("v").split(".")
    return major, minor

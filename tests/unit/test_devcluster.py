"""Pure parts of the local control plane tooling (no processes, no network)."""

from __future__ import annotations

import yaml

from devtools.cluster import launcher, toolchain, versions
from infer_operator import labels

KUBERNETES_GOMOD_SAMPLE = """\
// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
	k8s.io/apiextensions-apiserver v0.0.0
	k8s.io/klog/v2 v2.130.1
	k8s.io/kube-openapi v0.0.0-20250710124328-f3f2b991d03b
	k8s.io/client-go v0.0.0 // indirect
)

require k8s.io/sample-cli-plugin v0.0.0

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/apiextensions-apiserver => ./staging/src/k8s.io/apiextensions-apiserver
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/cri-client => ./staging/src/k8s.io/cri-client
	k8s.io/sample-cli-plugin => ./staging/src/k8s.io/sample-cli-plugin
)
"""


def test_staging_modules_from_gomod_text():
    mods = toolchain.staging_modules(KUBERNETES_GOMOD_SAMPLE)
    assert mods == sorted(
        {
            "k8s.io/api",
            "k8s.io/apiextensions-apiserver",
            "k8s.io/client-go",
            "k8s.io/cri-client",
            "k8s.io/sample-cli-plugin",
        }
    )
    # Real (non-staging) k8s.io modules are not replaced.
    assert "k8s.io/klog/v2" not in mods and "k8s.io/kube-openapi" not in mods


def test_replace_lines_use_staging_version():
    lines = toolchain.replace_lines(KUBERNETES_GOMOD_SAMPLE)
    assert "k8s.io/api => k8s.io/api v0.34.4" in lines
    assert all(line.endswith(" " + versions.KUBERNETES_STAGING_VERSION) for line in lines)


def test_rendered_build_module():
    text = toolchain.render_kubernetes_gomod(KUBERNETES_GOMOD_SAMPLE)
    assert "require k8s.io/kubernetes v1.34.4" in text
    assert "go 1.24.0" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4" in text
    gomod, main = toolchain.render_etcd_module()
    assert "go.etcd.io/etcd/server/v3 v3.6.16" in gomod
    assert "etcdmain.Main(os.Args)" in main


def test_versions_and_key():
    assert versions.KUBERNETES_VERSION == "v1.34.4"
    assert versions.KUBERNETES_STAGING_VERSION == "v0.34.4"
    key = versions.versions_key()
    for v in ("v1.34.4", "v3.6.16", "v0.7.0", "v3.19.0"):
        assert v in key
    assert "/" not in key
    assert versions.kubernetes_major_minor() == ("1", "34")


def test_ldflags_set_version_for_server_and_client():
    flags = toolchain.kube_ldflags()
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.34.4" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags
    assert "-s -w" in flags


def test_cache_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("INFER_OPERATOR_CACHE", str(tmp_path))
    assert toolchain.bin_dir() == tmp_path / versions.versions_key() / "bin"
    assert toolchain.missing(["etcd"]) == ["etcd"]


def test_state_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("INFER_OPERATOR_CLUSTER_DIR", str(tmp_path / "c"))
    assert launcher.state_dir_path() == (tmp_path / "c").resolve()
    assert launcher.kubeconfig_path(tmp_path / "x") == (tmp_path / "x").resolve() / "kubeconfig"


def _stages() -> dict[str, dict]:
    docs = list(yaml.safe_load_all(launcher.stages_yaml()))
    assert all(d["kind"] == "Stage" and d["apiVersion"] == "kwok.x-k8s.io/v1alpha1" for d in docs)
    return {d["metadata"]["name"]: d for d in docs}


def _exprs(stage: dict) -> dict[str, dict]:
    return {e["key"]: e for e in stage["spec"]["selector"]["matchExpressions"]}


def test_stage_set():
    stages = _stages()
    assert {
        "pod-create",
        "pod-init-container-running",
        "pod-init-container-completed",
        "pod-ready",
        "pod-delete",
        "pod-hold-not-ready",
        "pod-release-ready",
        "node-initialize",
        "node-heartbeat-with-lease",
    } <= set(stages)
    kinds = {s["spec"]["resourceRef"]["kind"] for s in stages.values()}
    assert kinds == {"Pod", "Node"}


def test_pod_delete_honours_finalizers_and_grace():
    stage = _stages()["pod-delete"]
    ex = _exprs(stage)
    assert ex[".metadata.deletionTimestamp"]["operator"] == "Exists"
    assert ex[".metadata.finalizers"]["operator"] == "DoesNotExist"
    delay = stage["spec"]["delay"]
    # Deleted exactly at the deletionTimestamp: no random jitter before it.
    assert delay["durationFrom"]["expressionFrom"] == ".metadata.deletionTimestamp"
    assert "jitterDurationMilliseconds" not in delay and "jitterDurationFrom" not in delay
    assert stage["spec"]["next"]["delete"] is True
    # No stage ever touches finalizers.
    assert all("finalizers" not in s["spec"]["next"] for s in _stages().values())


def test_hold_not_ready_stages():
    stages = _stages()
    key = f'.metadata.annotations["{launcher.READY_ANNOTATION}"]'
    hold, release = _exprs(stages["pod-hold-not-ready"]), _exprs(stages["pod-release-ready"])
    assert hold[key]["operator"] == "In" and hold[key]["values"] == ["false"]
    assert release[key]["operator"] == "NotIn" and release[key]["values"] == ["false"]
    assert launcher.READY_ANNOTATION in stages["pod-ready"]["spec"]["next"]["statusTemplate"]
    # Only live pods are held/released.
    for ex in (hold, release):
        assert ex[".metadata.deletionTimestamp"]["operator"] == "DoesNotExist"


def test_kwok_pods_keep_the_readiness_gate_rule():
    """KWOK has no kubelet: the stages say Ready only once the operator's gate is True, as a kubelet would."""
    stages = _stages()
    gate = _exprs(stages["pod-gate-ready"])
    key = f'.status.conditions.[] | select( .type == "{labels.CONDITION_READY}" ) | .status'
    assert gate[key]["operator"] == "In" and gate[key]["values"] == ["True"]
    for name in ("pod-ready", "pod-release-ready", "pod-gate-ready"):
        assert ".spec.readinessGates" in stages[name]["spec"]["next"]["statusTemplate"], name


def test_node_manifest_advertises_gpus():
    node = launcher.node_manifest("kwok-node-0")
    assert node["metadata"]["labels"]["type"] == "kwok"
    for section in ("capacity", "allocatable"):
        res = node["status"][section]
        assert {"cpu", "memory", "pods", "nvidia.com/gpu"} <= set(res)


# --------------------------------------------------------------------------- the real node


def test_real_node_configs(tmp_path):
    from devtools.cluster import realnode

    containerd = realnode.containerd_config(tmp_path)
    assert "restrict_oom_score_adj = true" in containerd and 'sandbox_image = "docker.io/local/pause:1"' in containerd
    assert f'address = "{tmp_path}/containerd/containerd.sock"' in containerd
    kubelet = yaml.safe_load(realnode.kubelet_config(tmp_path, 12345))
    assert kubelet["registerWithTaints"] == [{"key": realnode.TAINT_KEY, "value": "true", "effect": "NoSchedule"}]
    assert (kubelet["address"], kubelet["port"], kubelet["healthzPort"]) == (
        realnode.POD_GATEWAY,
        realnode.KUBELET_PORT,
        12345,
    )
    assert kubelet["cgroupsPerQOS"] is False and kubelet["failSwapOn"] is False
    proxy = yaml.safe_load(realnode.kube_proxy_config(tmp_path, 1, 2))
    assert (proxy["clusterCIDR"], proxy["hostnameOverride"]) == (realnode.POD_SUBNET, realnode.NODE_NAME)
    cni = realnode.cni_config(tmp_path)["plugins"][0]
    assert cni["bridge"] == realnode.BRIDGE and cni["ipam"]["ranges"][0][0]["gateway"] == realnode.POD_GATEWAY
    assert realnode.POD_SUBNET != launcher.POD_CIDR  # KWOK's pod IPs never collide with the real node's


def test_real_node_needs_root(monkeypatch):
    from devtools.cluster import realnode

    monkeypatch.setattr(realnode.os, "geteuid", lambda: 1000)
    assert "needs root" in realnode.host_reason()
    assert "needs root" in realnode.unavailable_reason("/nonexistent-state-dir")


def test_node_binaries_are_toolchain_components():
    assert set(toolchain.NODE_COMPONENTS) <= set(toolchain.ALL_COMPONENTS)
    assert toolchain.component("kubelet").version == versions.KUBERNETES_VERSION


def test_the_registry_consumers_are_built_from_their_committed_sources_at_the_pinned_versions():
    for name, folder in toolchain.CONSUMER_COMPONENTS.items():
        src = toolchain.CONSUMERS_DIR / folder
        assert (src / "go.mod").is_file() and (src / "go.sum").is_file() and (src / "main.go").is_file()
        assert name in toolchain.ALL_COMPONENTS
    grpc = (toolchain.CONSUMERS_DIR / "grpc_resolver" / "go.mod").read_text()
    assert f"google.golang.org/grpc {versions.GRPC_GO_VERSION}" in grpc
    assert f"go.etcd.io/etcd/client/v3 {versions.ETCD_CLIENT_VERSION}" in grpc
    coredns = (toolchain.CONSUMERS_DIR / "coredns" / "go.mod").read_text()
    assert f"github.com/coredns/coredns {versions.COREDNS_VERSION}" in coredns
    # an edit of a consumer's source is a new stamp: the cached binary is rebuilt
    assert toolchain.consumer_sources_hash("coredns") in toolchain.component("coredns").stamp_value

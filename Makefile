# The project's commands. Two are all a newcomer needs:
#   make demo   - the operator on a local control plane (or $KUBECONFIG's cluster), with a sample service
#   make test   - every test: unit, registry (real etcd + HTTP), integration (real API server)
# Both set up what they need first: a virtualenv, Debian packages, and the cached Kubernetes binaries.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system-deps lint format test test-unit images demo cluster-up cluster-down crds docs deploy lock release-dry-run e2e-kind clean

setup: $(VENV)/.installed system-deps

# The venv gets exactly the locked versions (the image's runtime lock, and the development lock on
# top), each wheel checked against its hash; the project itself is installed without dependencies.
# `make lock` refreshes both locks.
LOCKS = images/operator/requirements.lock requirements-dev.lock
$(VENV)/.installed: pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --only-binary=:all: $(addprefix -r ,$(LOCKS))
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/pip check
	touch $@

# Debian packages the tests use: etcd-server is the registry's etcd in tests; redis-server the
# queue of the sample app's async role; busybox, wget and curl are the shells and HTTP clients the
# pod scripts are tested with; containerd, runc, containernetworking-plugins, iptables, conntrack
# and iproute2 run the real node (devtools/cluster/realnode.py), mmdebstrap makes its images' rootfs;
# zookeeper is the zookeeper backend's server in tests (run by devtools/registries, never as a
# system service: the package without the daemon), maven and the JDK build the Curator consumer.
# prometheus brings promtool, which tests the chart's alerts (tests/helm/test_chart_alerts.py).
system-deps:
	@missing=""; \
	  [ -x /usr/bin/etcd ] || missing="$$missing etcd-server"; \
	  command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	  command -v busybox >/dev/null || missing="$$missing busybox"; \
	  command -v wget >/dev/null || missing="$$missing wget"; \
	  command -v curl >/dev/null || missing="$$missing curl"; \
	  command -v openssl >/dev/null || missing="$$missing openssl"; \
	  command -v unshare >/dev/null || missing="$$missing util-linux"; \
	  command -v containerd >/dev/null || missing="$$missing containerd"; \
	  command -v runc >/dev/null || missing="$$missing runc"; \
	  [ -x /usr/lib/cni/bridge ] || missing="$$missing containernetworking-plugins"; \
	  command -v iptables >/dev/null || missing="$$missing iptables"; \
	  command -v conntrack >/dev/null || missing="$$missing conntrack"; \
	  command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  [ -f /usr/share/java/zookeeper.jar ] || missing="$$missing zookeeper"; \
	  command -v mvn >/dev/null || missing="$$missing maven"; \
	  command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	  command -v promtool >/dev/null || missing="$$missing prometheus"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  fi

# The linter and the formatter (ruff; settings in pyproject.toml), on everything Python.
LINTED = operator devtools tests bench hack
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

test: setup lint
	$(PY) -m devtools.cluster build
	$(PY) -m pytest $(PYTEST_ARGS)

images: setup
	$(PY) -m devtools.images

test-unit: setup lint
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(PY) -m devtools.demo

cluster-up: setup
	$(PY) -m devtools.cluster up

cluster-down:
	$(PY) -m devtools.cluster down

crds: $(VENV)/.installed
	$(VENV)/bin/infer-operator crd > crds/serving.infer-operator.io_inferenceservices.yaml

# The configuration reference, generated from the CRD schema (a unit test fails when it is stale).
docs: $(VENV)/.installed
	$(VENV)/bin/infer-operator reference > docs/configuration.md

# Plain manifests rendered from the Helm chart with default values (a test fails when they are stale),
# the chart's copies of the CRDs, and the chart's README from values.yaml's comments.
HELM_BIN = $$($(PY) -c 'from devtools.cluster import toolchain; print(toolchain.binary_path("helm"))')
# Rendered for the local control plane's Kubernetes version (helm's own default, v1.20, is below the
# chart's kubeVersion); nothing in the chart depends on it.
KUBE_VERSION = $$($(PY) -c 'from devtools.cluster import versions; print(versions.KUBERNETES_VERSION)')
deploy: $(VENV)/.installed
	$(PY) -m devtools.cluster build helm
	cp crds/*.yaml charts/infer-operator/crds/
	cp crds/serving.infer-operator.io_inferenceservices.yaml deploy/01-crd-inferenceservices.yaml
	cp crds/kopf-peering.yaml deploy/01-crd-kopf-peering.yaml
	{ echo "# Generated by 'make deploy': helm template infer-operator charts/infer-operator --namespace infer-operator --kube-version $(KUBE_VERSION)"; \
	  $(HELM_BIN) template infer-operator charts/infer-operator --namespace infer-operator --kube-version $(KUBE_VERSION); } > deploy/02-infer-operator.yaml
	$(PY) -m devtools.chart_readme > charts/infer-operator/README.md

# The pinned, hashed dependencies: the image's (images/operator/requirements.lock) and the development
# venv's additions (requirements-dev.lock), resolved from PyPI with pip for every Python and CPU the
# image may use; existing pins are kept. A unit test fails when pyproject.toml's lists changed.
lock:
	$(PYTHON) hack/lock.py

# What the release workflow would publish for this version: the chart packaged into dist/release/,
# the image and chart pushes printed (hack/release.sh; tag vX.Y.Z runs it for real in CI).
release-dry-run: $(VENV)/.installed
	$(PY) -m devtools.cluster build helm
	HELM=$(HELM_BIN) hack/release.sh --dry-run

# End to end on kind (needs Docker and kind; exits 0 with "skipped: ..." without them).
e2e-kind:
	tests/e2e/kind_e2e.sh

clean: cluster-down
	rm -rf $(VENV) .pytest_cache

# Benchmarks (not tests; nothing asserts a time): a quick subset. Each one alone: python -m bench <name>.
.PHONY: bench
bench: setup
	$(PY) -m bench quick

# The project's commands. Two are all a newcomer needs:
#   make demo   - the operator on a local control plane (or $KUBECONFIG's cluster), with a sample service
#   make test   - every test: unit, registry (real etcd + HTTP), integration (real API server)
# Both set up what they need first: a virtualenv, Debian packages, and the cached Kubernetes binaries.

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup system-deps test test-unit demo cluster-up cluster-down crds docs clean

setup: $(VENV)/.installed system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# Debian packages the tests use: etcd-server is the registry's etcd in tests; busybox, wget and
# curl are the shells and HTTP clients the pod scripts are tested with.
system-deps:
	@missing=""; \
	  [ -x /usr/bin/etcd ] || missing="$$missing etcd-server"; \
	  command -v busybox >/dev/null || missing="$$missing busybox"; \
	  command -v wget >/dev/null || missing="$$missing wget"; \
	  command -v curl >/dev/null || missing="$$missing curl"; \
	  command -v openssl >/dev/null || missing="$$missing openssl"; \
	  command -v unshare >/dev/null || missing="$$missing util-linux"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	  fi

test: setup
	$(PY) -m infer_operator.devcluster build
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

demo: setup
	$(PY) -m infer_operator.demo

cluster-up: setup
	$(PY) -m infer_operator.devcluster up

cluster-down:
	$(PY) -m infer_operator.devcluster down

crds: $(VENV)/.installed
	$(VENV)/bin/infer-operator crd > crds/serving.infer-operator.io_inferenceservices.yaml

# The configuration reference, generated from the CRD schema (a unit test fails when it is stale).
docs: $(VENV)/.installed
	$(VENV)/bin/infer-operator reference > docs/configuration.md

clean: cluster-down
	rm -rf $(VENV) .pytest_cache

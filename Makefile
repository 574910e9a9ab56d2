# GuildNet developer commands. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEV_KUBECONFIG ?= $(HOME)/.guildnet/kubeconfig
PYTEST_ARGS ?=

UI_BUILD := guildnet/web/index.html

.PHONY: help run test lint unit integration e2e realnode ui ui-test testbin images dev-cluster \
	dev-cluster-kwok clean \
	bench-proxy bench-proxy-memory bench-workspaces bench-ide bench-changefeeds deploy-rethinkdb

help:
	@echo "make run          run the Host App in the foreground (https://127.0.0.1:8090)"
	@echo "make test         lint, types, unit and integration tests (real test cluster)"
	@echo "make lint         ruff and mypy"
	@echo "make ui           build the browser UI into guildnet/web/"
	@echo "make images       build the workspace images (no registry) into ~/.cache/guildnet/images"
	@echo "make dev-cluster  start a real-node cluster for manual use; writes $(DEV_KUBECONFIG)"
	@echo "make dev-cluster-kwok  the same with a kwok (simulated) node: no real pods"
	@echo "make deploy-rethinkdb  server-side apply etc/k8s's RethinkDB to \$$KUBECONFIG (RETHINKDB_NAMESPACE, RETHINKDB_STORAGE=pvc|emptyDir)"
	@echo "make bench-proxy  proxy figures vs direct, nginx and configurable-http-proxy"
	@echo "make bench-proxy-memory  proxy RSS during a slow 2 GiB download and a 2 GiB upload"
	@echo "make realnode     real code-server and JupyterLab on a real kubelet node, in Chromium"
	@echo "make bench-ide    time to a usable code-server/JupyterLab: GuildNet vs direct vs CHP"
	@echo "make bench-changefeeds  1,000 SSE subscribers on one table's changefeed vs one direct feed (BENCH_ARGS=--quick)"

$(STAMP): pyproject.toml setup.cfg
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

run: $(STAMP) $(UI_BUILD)
	$(VENV)/bin/twistd -n --pidfile= --reactor=guildnet guildnet

# The browser UI (ui/, React + Vite) builds into guildnet/web/, which ships in the package.
ui:
	cd ui && npm ci --no-audit --no-fund && npm run build

$(UI_BUILD):
	$(MAKE) ui

ui-test:
	cd ui && npm ci --no-audit --no-fund && npm test

lint: $(STAMP)
	$(VENV)/bin/ruff check guildnet twisted tests bench setup.py
	$(VENV)/bin/ruff format --check guildnet twisted tests bench setup.py
	$(VENV)/bin/mypy

# On the reactor GuildNet ships with (tests/conftest.py), then the proxy and TLS
# tests again on Twisted's default reactor, which GuildNet must also work on.
unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/functional $(PYTEST_ARGS)
	GUILDNET_TEST_REACTOR=default $(PY) -m pytest $(PYTEST_ARGS) \
		tests/unit/test_proxy_engine.py tests/unit/test_tlstransport.py tests/unit/test_reactor.py \
		tests/unit/test_sse_fanout_tls.py

testbin:
	tests/harness/build-testbin.sh all

# Workspace images built locally (debootstrap + umoci + skopeo, no registry), cached by
# version under ~/.cache/guildnet/images, for the real-node tier to import into containerd.
# Needs root. `make images IMAGES=pause` builds one.
IMAGES ?= all
IMAGE_DEBS := debootstrap umoci skopeo gcc
images:
	@for cmd in $(IMAGE_DEBS); do command -v $$cmd >/dev/null || { \
		echo "make images: $$cmd not found: apt-get install debootstrap umoci skopeo gcc libc6-dev" >&2; \
		exit 1; }; done
	@command -v go >/dev/null || { echo "make images: go not found (Go 1.26+ is required)" >&2; exit 1; }
	tests/harness/images/build-images.sh $(IMAGES)

integration: $(STAMP) testbin images
	tests/harness/netns-run.sh $(PY) -m pytest tests/integration $(PYTEST_ARGS)

# End-to-end: Debian's chromium driven by playwright-core against a real Host App
# and the real test cluster (its own pytest session: it starts its own cluster).
e2e: $(STAMP) testbin images $(UI_BUILD)
	tests/harness/netns-run.sh $(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Real IDEs on the real-node cluster (real kubelet, containerd, CNI, kube-proxy and the
# locally built images): its own pytest session, it starts that cluster instead of kwok's.
realnode: $(STAMP) testbin images $(UI_BUILD)
	tests/harness/netns-run.sh $(PY) -m pytest tests/realnode $(PYTEST_ARGS)

test: lint unit ui-test integration e2e realnode

# A real node (kubelet, containerd, kube-proxy, CoreDNS) in its own network namespace, joined
# to the host by a veth pair with routes for 198.19.0.0/20 (Services) and 198.19.64.0/20
# (pods), so `make run` reaches workspaces. Needs root; undone on Ctrl-C (or the next start).
dev-cluster: $(STAMP) testbin images
	$(PY) -m tests.harness.realnode --kubeconfig $(DEV_KUBECONFIG)

# The kwok tier: a simulated node (no containers run); pod IPs are not reachable.
dev-cluster-kwok: $(STAMP) testbin
	$(PY) -m tests.harness.cluster --kubeconfig $(DEV_KUBECONFIG)

# Benchmarks (not tests): print figures and ratios against baselines run alongside.
# bench-proxy needs: apt-get install wrk nginx-light curl; cd bench/proxy && npm ci
bench-proxy: $(STAMP)
	cd bench/proxy && npm ci --no-audit --no-fund
	$(PY) -m bench.proxy

bench-proxy-memory: $(STAMP)
	$(PY) -m bench.proxy.memory

# bench-ide needs the real-node tier (make testbin images) and the UI's playwright-core.
bench-ide: $(STAMP) testbin images $(UI_BUILD)
	cd bench/proxy && npm ci --no-audit --no-fund
	tests/harness/netns-run.sh $(PY) -m bench.ide

bench-workspaces: $(STAMP) testbin
	tests/harness/netns-run.sh $(PY) -m bench.workspaces

# A real RethinkDB server and Host App, the subscribers held by a Go client (bench/sseclient,
# stdlib only, built here outside the namespace). BENCH_ARGS: --quick, --subscribers N,
# --rate R, --seconds S.
BENCH_ARGS ?=
bench-changefeeds: $(STAMP)
	cd bench/sseclient && GOTOOLCHAIN=local go build -o $(abspath $(VENV))/bin/bench-sseclient .
	tests/harness/netns-run.sh $(PY) -m bench.changefeeds $(BENCH_ARGS)

# RethinkDB in the cluster of $KUBECONFIG (default ~/.guildnet/kubeconfig): the StatefulSet and
# Service of etc/k8s/, server-side applied (idempotent). The API's POST .../db/deploy does the same.
deploy-rethinkdb: $(STAMP)
	$(PY) -m guildnet.rdb.deploy --kubeconfig "$${KUBECONFIG:-$(DEV_KUBECONFIG)}" \
		--namespace "$${RETHINKDB_NAMESPACE:-$${K8S_NAMESPACE:-default}}" \
		--name "$${RETHINKDB_SERVICE_NAME:-rethinkdb}" --storage "$${RETHINKDB_STORAGE:-pvc}"

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

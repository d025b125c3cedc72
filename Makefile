# voicecall-pipeline — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean kafka docs dashboard bench bench-ingress bench-dedup bench-billing bench-recordings bench-calls image

# pip's own lines, shortened to one per package fetched: progress without pages of "Requirement already satisfied".
PIP_PROGRESS := sed -un -e 's/^Collecting \([^ ;]*\).*/  fetching \1/p' -e 's/^Successfully installed.*/  installed/p'

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "voicecall-pipeline needs Python 3.11 or newer; $(PY) is $$($(PY) -V 2>&1). Use make PY=python3.11" >&2; exit 1; }
	@echo "==> $(VENV): installing voicecall-pipeline and its tools (the first time: about a minute)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@set -o pipefail; $(BIN)/pip install --progress-bar off --upgrade pip | $(PIP_PROGRESS)
	@set -o pipefail; $(BIN)/pip install --progress-bar off -e '.[dev,tracing]' | $(PIP_PROGRESS)
	@# noida-db: the fallback broker where Java is absent; always installed (hash-pinned) so its test runs too.
	@set -o pipefail; $(BIN)/pip install --progress-bar off -r deploy/dev/noida-requirements.txt | $(PIP_PROGRESS)
	@touch $(STAMP)
	@echo "==> $(VENV) ready"

venv: $(STAMP)

## run: the embedded default — a local broker, the topics, every service, fed by the platform simulator
run: $(STAMP)
	$(BIN)/voicecall dev --simulate

## test: the whole suite against a real Apache Kafka broker the suite starts itself
test: $(STAMP)
	@echo "==> tests against $${VOICECALL_TEST_BOOTSTRAP:-an Apache Kafka $$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/dev/kafka/pom.xml) broker (KRaft, one node) the suite starts itself; VOICECALL_TEST_BOOTSTRAP=host:port uses a running cluster instead}"
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/mypy
	if [ -f Dockerfile ]; then $(BIN)/hadolint Dockerfile; fi

## dashboard: deploy/k8s/monitoring/voicecall-pipeline.json from dashboard.py (a test checks it is current)
dashboard: $(STAMP)
	$(BIN)/python deploy/k8s/monitoring/dashboard.py

## docs: docs/configuration.md from the settings classes (each field's description); a test checks it is current
docs: $(STAMP)
	$(BIN)/python -m voicecall.settingsdoc docs/configuration.md

## kafka: download the Apache Kafka jars once (the test suite does this on demand as well)
kafka:
	mvn -q -f deploy/dev/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=lib

bench: bench-ingress bench-dedup bench-billing bench-recordings bench-calls

bench-ingress: $(STAMP)
	$(BIN)/python bench/ingress.py

bench-dedup: $(STAMP)
	$(BIN)/python bench/dedup.py

bench-billing: $(STAMP)
	$(BIN)/python bench/billing.py

bench-recordings: $(STAMP)
	$(BIN)/python bench/recordings.py

bench-calls: $(STAMP)
	$(BIN)/python bench/calls.py

## image: the container image, built without a registry (deploy/image/build.sh: a Debian base of its own, a wheelhouse)
image:
	PY=$(PY) deploy/image/build.sh

clean:
	rm -rf .state $(VENV) build *.egg-info

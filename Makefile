# voicecall-pipeline — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean kafka bench bench-ingress bench-dedup bench-billing bench-recordings bench-calls image

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "voicecall-pipeline needs Python 3.11 or newer; $(PY) is $$($(PY) -V 2>&1). Use make PY=python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# noida-db: the fallback broker where Java is absent; always installed (hash-pinned) so its test runs too.
	$(BIN)/pip install -q -r deploy/dev/noida-requirements.txt
	touch $(STAMP)

venv: $(STAMP)

## run: the embedded default — a local broker, the topics, every service, fed by the platform simulator
run: $(STAMP)
	$(BIN)/voicecall dev --simulate

## test: the whole suite against a real Apache Kafka broker the suite starts itself
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/mypy
	if [ -f Dockerfile ]; then $(BIN)/hadolint Dockerfile; fi

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

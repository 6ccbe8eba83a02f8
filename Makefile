# Thin wrappers over the Python entry points (the `servecompare` console script). Everything installs into ./.venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install test test-fast bench soak export up down status lint validate compose-e2e vendor-smoke vendor-torch mutation scaling check-model clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v java >/dev/null 2>&1 || { echo "== installing Java 17 for TorchServe (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless) \
	  || { echo "Java is missing and apt failed: install a Java 17 runtime"; exit 1; }; }
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q --no-deps tensorflow-serving-api==2.21.0
	@touch $(STAMP)

# The README's test command. Installs what it needs, including the offline deployment checkers.
test: install
	bash scripts/install-validators.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy export gateway stack loadtest servecompare_cli
	$(PY) -m pytest tests
	$(VENV)/bin/servecompare compose-e2e --if-available
	$(VENV)/bin/servecompare vendor-smoke --if-available

# Opt-in: each .mar under the TorchServe image's own runtime (Python 3.9, torch 2.4.0, TorchServe 0.12.0), in a
# Debian bullseye rootfs. PyPI has torch 2.4.0 for Linux only as the CUDA build: ~5 GB and ~2 minutes the first time.
vendor-torch: install
	SERVECOMPARE_VENDOR_TORCH=1 $(PY) -m pytest -s tests/export/test_vendor_torch24.py

# Mutation score of the decision and protocol modules (scripts/mutation.toml): mutmut on a scratch copy of the
# working tree, each module with only its own fast tests; prints killed/total per module and every survivor's diff,
# exits 1 under 80 %. Not part of `make test`: about 40 minutes on 2 busy cores (one module: MODULES="handler").
mutation: install
	$(PY) scripts/mutation.py $(MODULES)

test-fast: install
	$(PY) -m pytest tests -m "not integration and not e2e"

# The README's main command: the comparison benchmark on the native stack.
bench: install
	$(VENV)/bin/servecompare bench $(ARGS)

soak: install
	$(VENV)/bin/servecompare soak $(ARGS)

export: install
	$(VENV)/bin/servecompare export $(ARGS)

# Is a registered model (yours: see the README) servable, and do both servers and the gateway answer as its
# reference file says? make check-model MODEL=name [REGISTRY=path/to/models.toml]
check-model: install
	$(VENV)/bin/servecompare check-model --model $(MODEL) $(if $(REGISTRY),--registry $(REGISTRY))

# The training side: data-parallel PyTorch DDP vs TensorFlow MultiWorkerMirroredStrategy, N = 1 and 2 by default.
scaling: install
	$(VENV)/bin/servecompare scaling $(ARGS)

up: install
	$(VENV)/bin/servecompare up

down:
	$(VENV)/bin/servecompare down

status:
	$(VENV)/bin/servecompare status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy export gateway stack loadtest servecompare_cli

validate: install
	bash scripts/install-validators.sh
	$(PY) -m pytest tests/deploy

# docker compose for real: build the images (self-built servers: docker-compose.selfbuilt.yml), run the stack in
# containers, check it from the host, take it down. Starts dockerd for the run where it is installed but stopped.
compose-e2e: install
	bash scripts/install-validators.sh
	$(VENV)/bin/servecompare compose-e2e

# `docker compose up` with the vendors' images (.env): pull them, up, predict every model on both backends through
# the gateway, TorchServe's start and a refused request in `docker compose logs`, down. Where they can't be pulled,
# it says so and runs the same steps on the self-built images.
vendor-smoke: install
	bash scripts/install-validators.sh
	$(VENV)/bin/servecompare vendor-smoke

clean:
	rm -rf .run reports runs

# Two commands on a fresh machine with Python 3.10+ and make:
#   make demo   - run the demo on an embedded Redis
#   make test   - lint, type-check and run the whole test suite (what CI runs). As root with
#                 apt-get it first installs Debian's bubblewrap (the jail) and chromium (the
#                 browser test); OODIDA_NO_APT=1 make test installs nothing (those tests skip).
#                 Tests write only inside the clone and a scratch directory removed at the end.
#   make images - oodida:local and oodida-redis:local from Debian's packages and PyPI's wheels
#                 only (no Docker registry): as root, with the engine of DOCKER_HOST
#                 (docker/dockerd start DIR starts a private one). scripts/docker-smoke.sh
#                 builds and tries them with an engine of its own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench bench-quick install clean images

demo: $(STAMP)
	$(BIN)/oodida demo

test: $(STAMP)
	scripts/optional-tools.sh
	VENV=$(VENV) scripts/check.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Every benchmark row of BENCHMARKS.md in one run (8-9 minutes here): a table on stdout, JSON and,
# with matplotlib installed, a PNG in benchmarks/out/.
bench: $(STAMP)
	mkdir -p benchmarks/out
	$(BIN)/python benchmarks/bench_fleet.py --json benchmarks/out/fleet.json --plot benchmarks/out/fleet.png

bench-quick: $(STAMP)
	mkdir -p benchmarks/out
	$(BIN)/python benchmarks/bench_fleet.py --quick --json benchmarks/out/fleet-quick.json --plot benchmarks/out/fleet-quick.png

install: $(STAMP)

images: $(STAMP)
	docker/make-base-images
	VENV=$(VENV) docker/build-wheels
	docker build --network none -f docker/Dockerfile -t oodida:local --build-arg BASE=oodida-base:bookworm .
	docker build --network none -t oodida-redis:local - < docker/redis.Dockerfile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .oodida .pytest_cache .mypy_cache .ruff_cache *.egg-info

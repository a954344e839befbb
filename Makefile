# Two commands do all the set-up on a fresh machine (README, "Set-up"):
#   make train   installs the locked versions of what training needs, then trains the default
#                model (VAE on Fashion-MNIST)
#   make test    installs the locked versions, then runs the default test suite
# They install into the active virtual environment, else into .venv (made here); VENV=<dir> picks
# another. `make train ARGS="trainer.max_epochs=1"` passes arguments to train.py, and
# `make test ARGS="-x tests/test_docs.py"` to pytest.
# requirements.lock holds the exact versions the suite last passed with; `make lock` re-resolves
# the newest compatible ones and rewrites it, `make test-latest` tests them without touching it.
PYTHON ?= python3
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY := $(VENV)/bin/python
LOCK := requirements.lock
# what `make install` installs, and what the lock covers
EXTRAS := dev,docs,mlflow,wandb
LOCK_EXTRAS := dev,bench,docs,mlflow,wandb
# the environment of `make test-latest` and `make lock`, made anew each time
LATEST ?= .venv-latest
ARGS ?=

.PHONY: install install-base data train test test-slow test-all test-latest latest-env lock lint docs bench mutation

$(PY):
	$(PYTHON) -m venv $(VENV)

install: data $(PY)
	$(PY) -m pip install --quiet --constraint $(LOCK) --editable ".[$(EXTRAS)]"
	$(PY) scripts/check_lock.py $(LOCK)

# what training needs and no more (no test, docs or tracker extras): `make train`'s install
install-base: data $(PY)
	$(PY) -m pip install --quiet --constraint $(LOCK) --editable .
	$(PY) scripts/check_lock.py $(LOCK)

# Debian ships Fashion-MNIST as a package; elsewhere set data.data_dir or data.download=true.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	else echo "no apt-get: put Fashion-MNIST's IDX files in data/ or pass data.download=true"; fi

train: install-base
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: install
	$(PY) -m pytest -m slow

test-all: install
	$(PY) -m pytest

# a fresh environment with the newest versions pip resolves (no lock)
latest-env: data
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --editable ".[$(LOCK_EXTRAS)]"

test-latest: latest-env
	$(LATEST)/bin/python scripts/check_lock.py --compare $(LOCK)
	$(LATEST)/bin/python -m pytest -m "not slow"

lock: latest-env
	$(LATEST)/bin/python scripts/check_lock.py --write $(LOCK)

# the documentation site in site/; --strict: every link, figure and page resolves
docs: install
	$(PY) -m mkdocs build --strict --site-dir site

lint:
	$(PY) -m ruff check .

# mutation score of the default suite per package (hours on 2 cores; docs/testing.md)
MUTATE ?= models losses data utils metrics
mutation: install
	$(PY) scripts/mutation.py --packages $(MUTATE)

bench:
	$(PY) scripts/bench_trainer.py
	$(PY) scripts/bench_data.py
	$(PY) scripts/bench_crf.py
	$(PY) scripts/bench_capsule.py
	$(PY) scripts/bench_compile.py

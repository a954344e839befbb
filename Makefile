# Two commands do all the set-up on a fresh machine (see README):
#   make train   installs everything and trains the default model (VAE on Fashion-MNIST)
#   make test    installs everything and runs the tests
PYTHON ?= python3

.PHONY: install data train test test-all lint bench

install: data
	$(PYTHON) -m pip install -e ".[dev]"

# Debian ships Fashion-MNIST as a package; elsewhere set data.data_dir or data.download=true.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	else echo "no apt-get: put Fashion-MNIST's IDX files in data/ or pass data.download=true"; fi

train: install
	$(PYTHON) train.py

test: install
	$(PYTHON) -m pytest -m "not slow"

test-all: install
	$(PYTHON) -m pytest

lint:
	ruff check .

bench:
	$(PYTHON) scripts/bench_trainer.py
	$(PYTHON) scripts/bench_data.py
	$(PYTHON) scripts/bench_crf.py
	$(PYTHON) scripts/bench_capsule.py

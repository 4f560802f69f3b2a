# Two commands for a new user: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

# open3d (the synth extra: demo scenes, shape priors, tests) needs libusb at import time;
# install it when it is missing (root on these machines).
$(STAMP): pyproject.toml
	@if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then \
		echo "installing libusb-1.0-0 (needed by open3d)"; \
		(apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null \
		|| { echo "could not install libusb-1.0-0: run 'apt-get install libusb-1.0-0' as root"; exit 1; }; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the local CPU build; an unpinned torch pulls CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q torch==2.13.0 -e '.[synth,dev,ray]'
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest

demo: setup
	$(VENV)/bin/autolabel demo

bench: setup
	$(PY) benchmarks/prior.py
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/synthetic.py
	$(PY) benchmarks/kitti.py --root ../shared/data/kitti_dev --jitter 3

clean:
	rm -rf $(VENV) build *.egg-info

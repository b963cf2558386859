# Two commands do all the set-up on a fresh machine:
#   make run   - venv + packages + Debian tools, then the gateway with sip_configs/gateway.toml
#   make test  - the same set-up, then the whole test suite (CI: .ci/run)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= sip_configs/gateway.toml
APT_PACKAGES := kamailio sip-tester espeak-ng flite systemd
# binary that proves each Debian package is present (systemd-analyze: the unit tests)
APT_PROBES := kamailio sipp espeak-ng flite systemd-analyze
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pip prints one line per package and a download bar; in a log (no terminal) the bar
# appears once, finished. PIP_PROGRESS=off drops the bar.
PIP_PROGRESS ?= on
PIP_INSTALL = -m pip install --progress-bar $(PIP_PROGRESS) --no-input

.PHONY: run test lint deps apt venv clean bench unit

deps: apt venv

apt:
	@missing=0; for b in $(APT_PROBES); do command -v $$b >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the gateway's packages into $(VENV) (pyproject.toml + constraints.txt)"
	$(PY) $(PIP_INSTALL) -c constraints.txt -e '.[dev,test,ray]'
	touch $@

run: deps triton-venv
	mkdir -p .run
	$(VENV)/bin/asr-gateway check-config $(CONFIG)
	exec $(VENV)/bin/asr-gateway run --config $(CONFIG) --triton-venv $(TRITON_VENV)

test: deps triton-venv nemo-venv
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/mypy
	$(NEMO_PY) -m pytest -q -c tests/nemo/pytest.ini tests/nemo
	$(PY) -m pytest -q --durations=20 tests --ignore=tests/nemo

unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check gateway tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache

include Makefile.triton
include Makefile.systemd
include Makefile.bench

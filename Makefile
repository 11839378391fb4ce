# Two entry points, both self-installing on a fresh machine with only Python:
#   make demo   set up .venv (when missing or stale), install Debian's bubblewrap, mksh and
#               toybox for the virtual phones (when missing), and run the main job
#   make test   the same, plus Debian's chromium for the dashboard's browser test (when
#               missing), and run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
# A virtual phone is a sandbox (bubblewrap) running Android's shell (mksh) and tools (toybox).
PHONE_TOOLS := /usr/bin/bwrap /usr/bin/mksh /usr/bin/toybox

.PHONY: demo test lint setup browser phone-tools clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,convert]'
	touch $(STAMP)

# The browser test drives the system's chromium through Playwright's Python client; Playwright's
# own browser download is never used. Only the test target needs it, so `make demo` does not.
browser: $(CHROMIUM)

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

phone-tools: $(PHONE_TOOLS)

$(PHONE_TOOLS) &:
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bubblewrap mksh toybox

demo: $(STAMP) $(PHONE_TOOLS)
	$(VENV)/bin/harness demo

# Linters first (configured in pyproject.toml): a finding fails the run before the tests start.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(PHONE_TOOLS) $(CHROMIUM)
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info

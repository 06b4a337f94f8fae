# `make run` sets everything up and runs the whole system; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-only lint setup bench clean deps-debian

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv"; \
	  apt-get install -y python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }

# Debian packages the tests and benchmarks use (debian-packages.txt, one a line); skipped when all are present.
deps-debian:
	@missing=$$(for p in $$(grep -v '^\s*\(#\|$$\)' debian-packages.txt); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then \
	  echo "not root: cannot install $$missing (tests that need them are skipped; run 'sudo make deps-debian')"; \
	elif [ -n "$$missing" ]; then echo "installing Debian packages: $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null || \
	  { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing >/dev/null; }; fi

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py collectstatic --noinput -v 0

run: setup
	$(BIN)/python manage.py setupdemo
	@./scripts/run-all

test: deps-debian $(STAMP) test-only

test-only:
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mailcore webmail config tests bench
	$(BIN)/mypy mailcore

bench: deps-debian setup
	$(BIN)/python bench/store.py
	$(BIN)/python bench/smtp_inbound.py
	$(BIN)/python bench/outbound.py
	$(BIN)/python bench/imap.py
	$(BIN)/python bench/pop3.py
	$(BIN)/python bench/webmail.py

clean:
	rm -rf $(VENV) var

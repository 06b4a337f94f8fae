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

# Debian packages the tests need (debian-packages.txt, one per line); installed only when missing.
deps-debian:
	@missing=$$(for p in $$(grep -v '^#' debian-packages.txt); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; fi

$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt | deps-debian
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py collectstatic --noinput -v 0

run: setup
	$(BIN)/python manage.py setupdemo
	@./scripts/run-all

test: $(STAMP) test-only

test-only:
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mailcore webmail config tests bench
	$(BIN)/mypy mailcore

bench: setup
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) var

.PHONY: check test fmt
# The project's virtualenv (the README's set-up makes .venv) comes first when it exists,
# so `make check` works without activating it.
export PATH := $(if $(wildcard .venv/bin),$(CURDIR)/.venv/bin:,)$(PATH)

check:
	scripts/check
test:
	python -m pytest
fmt:
	ruff format src tests benchmarks examples
	ruff check --fix src tests benchmarks examples

.PHONY: check test fmt
check:
	scripts/check
test:
	python -m pytest
fmt:
	ruff format src tests benchmarks examples
	ruff check --fix src tests benchmarks examples

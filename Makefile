# The two commands of the README: `make run` and `make test`. Both set up .venv first (idempotent).
.PHONY: setup run test bench
setup:
	@bash scripts/setup.sh
run: setup
	.venv/bin/codesign run
test: setup
	.venv/bin/python -m pytest
bench: setup
	.venv/bin/python -m pytest -m benchmark benchmarks

# Convenience targets; the scripts are the source of truth (make is not on a fresh Debian).
.PHONY: test bench clean

test:
	./scripts/test

bench:
	./scripts/bootstrap && .venv/bin/python -m bench

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis

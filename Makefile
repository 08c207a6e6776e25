# Convenience targets; the scripts are the source of truth (make is not on a fresh Debian).
.PHONY: test bench clean

test:
	./scripts/test

bench:
	./scripts/bootstrap && .venv/bin/python -m bench

clean:
	rm -rf .venv build *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Coverage-guided fuzzing (fuzz/): each target for FUZZ_SECONDS; atheris is a fuzzing-only tool.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	./scripts/bootstrap
	.venv/bin/python -c "import atheris" 2>/dev/null || .venv/bin/pip install atheris
	FUZZ_SECONDS=$(FUZZ_SECONDS) .venv/bin/python -m fuzz

# The Debian package (debian/): dpkg-buildpackage with debhelper and pybuild; the .deb lands
# in build/deb/. Needs: debhelper dh-python python3-all-dev python3-setuptools python3-cffi
# python3-cryptography python3-msgpack python3-trio libkrb5-dev dpkg-dev fakeroot.
.PHONY: deb
deb:
	./packaging/build-deb build/deb

# The 60 s flood of issue 10 against two kinkd processes (opt-in: it needs a quiet machine).
.PHONY: flood
flood:
	./scripts/bootstrap
	KINK_LONG_TESTS=1 .venv/bin/pytest tests/robustness/test_flood.py -rP

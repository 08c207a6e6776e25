"""One target under atheris: `python -m fuzz.run TARGET CORPUS_DIR [libFuzzer flags...]`.

The target's modules are imported inside atheris.instrument_imports() so that libFuzzer sees
the coverage of kink.wire / kink_privsep; msgpack's C extension stays uninstrumented.
atheris.Fuzz() does not return: libFuzzer exits 0 when the time or run budget is spent, and
non-zero after writing the crashing input to -artifact_prefix.
"""

import sys

import atheris

with atheris.instrument_imports(include=["kink", "kink_privsep", "fuzz"]):
    from fuzz.targets import TARGETS


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

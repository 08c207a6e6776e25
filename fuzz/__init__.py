"""Coverage-guided fuzzing (atheris / libFuzzer) of kink's two parsers of hostile input.

Targets (fuzz.targets): "wire", the KINK decoder path (kink.wire decode, cksum_input,
decode_inner, check_message); "privsep", the helper's request path (protocol.decode_request,
then validate.command). Run them with `make fuzz` or `python -m fuzz [--seconds N] [--runs N]`.
"""

# The compiled cffi module (kink/krb5/_build.py). Untyped by nature; only kink.krb5._lib
# (and _der, for kink_usual_head) imports it, so the Any stays there.
from typing import Any

ffi: Any
lib: Any

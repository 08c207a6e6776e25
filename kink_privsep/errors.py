"""The two ways a request fails inside the helper."""

import errno
import os

from kink_privsep import protocol


class Refusal(Exception):
    """The helper refuses a request; `code` is a protocol.ERR_* and `reason` holds no key."""

    def __init__(self, code: str, reason: str, err: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.errno = err


class KernelError(Exception):
    """The kernel (or the recording backend standing in for it) answered with an errno."""

    def __init__(self, err: int, detail: str = "") -> None:
        text = os.strerror(err) + (f" ({detail})" if detail else "")
        super().__init__(text)
        self.errno = err
        self.text = text

    @property
    def not_found(self) -> bool:
        """The object asked for does not exist (XFRM answers ENOENT or ESRCH)."""
        return self.errno in (errno.ENOENT, errno.ESRCH)

    def refusal(self) -> Refusal:
        if self.errno == errno.EEXIST:
            return Refusal(protocol.ERR_EXISTS, self.text, self.errno)
        if self.not_found:
            return Refusal(protocol.ERR_NOT_FOUND, self.text, self.errno)
        return Refusal(protocol.ERR_KERNEL, self.text, self.errno)

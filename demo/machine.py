"""Which kernel the demo runs on: the running one when it has ESP, else user-mode Linux."""

import shutil
import subprocess

# One ESP SA of RFC 4106 AES-GCM, as the demo negotiates; zero key and salt: a probe, no secret.
_PROBE_SA = (
    *("ip", "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2"),
    *("proto", "esp", "spi", "0x100", "mode", "transport"),
    *("aead", "rfc4106(gcm(aes))", "0x" + "00" * 20, "128"),
)


def kernel_esp() -> str | None:
    """None if the running kernel takes an ESP SA; otherwise why not. The SA goes into a
    throwaway network namespace (`unshare --net`), gone when the probe exits."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    done = subprocess.run(
        ["unshare", "--net", *_PROBE_SA],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return done.stderr.strip() or f"ip xfrm state add exited {done.returncode}"
    return None


# The inside in a private network namespace (the bridge, KDC and host namespaces live there)
# and a private mount namespace with its own /run/netns (the names a and b, gone on exit). Its
# loopback is up: traffic to the namespace's own addresses (the KDC's) goes through it.
NETNS_COMMAND = (
    "unshare",
    "--net",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    "ip link set lo up && mkdir -p /run/netns && mount -t tmpfs kink-demo /run/netns "
    '&& exec "$0" -m demo.inside',
)

#!/bin/sh
# PID 1 of a user-mode Linux run started by tests/support/uml.py (read its docstring first).
# The root filesystem is the host's / through hostfs, so everything written outside the tmpfs
# mounts lands on the host. The kernel passes KINK_UML_WORK (the harness's work dir) from its
# command line; the harness wrote env.sh, fstab and script.sh there.
#
# Every exec costs 20-80 ms in UML (each page fault of the dynamic loader is a ptrace round
# trip), so this script runs as few programs as it can: one mount, one modprobe, one ip.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

# PID 1 must never return (the kernel panics): whatever happens, power off through sysrq, which
# needs neither systemd's poweroff nor a working /sbin. A failed setup step (set -e) ends here
# too, before the rc file exists: the harness then reports the console log. sync first: hostfs
# writes through, but pages of files mapped shared are written back only on sync.
halt() {
    sync
    [ -e /proc/sysrq-trigger ] || mount -t proc proc /proc
    echo o >/proc/sysrq-trigger
    while :; do sleep 1; done
}
trap halt EXIT

cd "$KINK_UML_WORK"
. ./env.sh
# proc, sysfs, devpts, /dev/shm, tmpfs on /tmp and /run, and the repository, work and output
# dirs bound back at their own paths over those tmpfs (see _fstab in uml.py).
mount -a -T ./fstab
modprobe -a $KINK_UML_MODULES
# Kernel-initiated loading runs a modprobe process for every new crypto instance name (two per
# algorithm, ~90 ms each in UML: 1.8 s for the first GCM SA). Everything ESP/AH/IPComp needs is
# loaded above, so turn the kernel's requests off; a script can still run modprobe itself.
echo >/proc/sys/kernel/modprobe
ip link set lo up

# The script gets a clean environment: env.sh only, not the kernel's leftovers.
cd "$KINK_UML_REPO"
rc=0
env -i /bin/sh -c '. "$1/env.sh" && exec /bin/sh "$1/script.sh"' sh "$KINK_UML_WORK" \
    </dev/null >"$KINK_UML_WORK/output" 2>&1 || rc=$?
# The host reads rc only after UML has exited.
echo "$rc" >"$KINK_UML_WORK/rc"

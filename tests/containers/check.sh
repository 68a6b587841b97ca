#!/bin/bash
# Self-check of ctr.py: runs real containers and prints the evidence, PASS/FAIL per claim.
# Usage (as root): tests/containers/check.sh [runc|crun]    exit status = number of failures.
set -u
cd "$(dirname "$0")"
RT=${1:-runc}
ENV=/var/tmp/mcp-warden-test-env
fails=0
ctr() { /usr/bin/python3 ctr.py run --runtime "$RT" "$@"; }

# expect NAME WANT GOT: print the evidence and whether it is what we want.
expect() {
    if [ "$2" = "$3" ]; then echo "PASS $1: $3"; else echo "FAIL $1: want [$2] got [$3]"; fails=$((fails + 1)); fi
}
# record NAME GOT: evidence only, no expectation.
record() { echo "INFO $1: $2"; }

# pidfd_open on ourselves, then raw pidfd_getfd (nr 438 on x86_64) on fd 0.
PIDFD='import os, ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
pfd = os.pidfd_open(os.getpid())
r = libc.syscall(438, pfd, 0, 0)
print("pidfd_getfd:", "ok fd %d" % r if r >= 0 else errno.errorcode[ctypes.get_errno()])'

echo "== $($RT --version | head -1), kernel $(uname -r)"
expect "stdin->stdout" "hi" "$(echo hi | ctr -- /bin/cat)"
ctr -- /bin/sh -c 'exit 7'; expect "exit code" "7" "$?"
big=$(head -c 5000000 /dev/urandom | tee /tmp/ctr-check.$$ | ctr -- /bin/cat | sha256sum)
expect "5 MB through cat unchanged" "$(sha256sum < /tmp/ctr-check.$$)" "$big"; rm -f /tmp/ctr-check.$$
expect "stdout has only the container's output" "out" "$(ctr -- /bin/sh -c 'echo out; echo err >&2' 2>/dev/null)"
expect "id -u (default)" "65534" "$(ctr -- /usr/bin/id -u)"
expect "id -u (--user 1000:1000)" "1000:1000" "$(ctr --user 1000:1000 -- /bin/sh -c 'echo $(id -u):$(id -g)')"
expect "capabilities" "CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000000000 CapAmb:0000000000000000" \
    "$(ctr -- /bin/grep Cap /proc/self/status | tr -d '\t' | xargs)"
expect "NoNewPrivs" "1" "$(ctr -- /bin/sh -c 'grep NoNewPrivs /proc/self/status | cut -f2')"
expect "ulimit -Hn (default)" "1024" "$(ctr -- /bin/sh -c 'ulimit -Hn')"
expect "ulimit -Sn/-Hn (--nofile 64:128)" "64/128" "$(ctr --nofile 64:128 -- /bin/sh -c 'echo $(ulimit -Sn)/$(ulimit -Hn)')"
expect "read-only root, /usr, /etc" "ro ro ro" "$(ctr -- /bin/sh -c 'for d in / /usr /etc; do touch $d/x 2>/dev/null && echo rw || echo ro; done' | xargs)"
expect "/tmp is writable tmpfs" "tmpfs" "$(ctr -- /bin/sh -c 'touch /tmp/x && stat -f -c %T /tmp')"
expect "network namespace (lo only)" "lo" "$(ctr -- /bin/sh -c 'ls /sys/class/net' | xargs)"
expect "--net host sees the host interfaces" "$(ls /sys/class/net | xargs)" "$(ctr --net host -- /bin/sh -c 'ls /sys/class/net' | xargs)"
# Interactive stdio, as an MCP client drives a server: a reply before stdin is closed.
RPC='import json, subprocess, sys
srv = "import sys, json\nfor l in sys.stdin: print(json.dumps({\"id\": json.loads(l)[\"id\"]}), flush=True)"
p = subprocess.Popen(sys.argv[1:] + ["--", "python3", "-c", srv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
for i in (1, 2):
    p.stdin.write(json.dumps({"jsonrpc": "2.0", "id": i, "method": "ping"}) + "\n"); p.stdin.flush()
    print(p.stdout.readline().strip(), end=" ")
p.stdin.close(); print("rc=%d" % p.wait())'
expect "JSON-RPC round trips over stdio" '{"id": 1} {"id": 2} rc=0' \
    "$(timeout 20 /usr/bin/python3 -c "$RPC" /usr/bin/python3 ctr.py run --runtime "$RT")"

for prof in moby containers-common none; do
    expect "[$prof] Seccomp mode" "$([ $prof = none ] && echo 0 || echo 2)" \
        "$(ctr --seccomp $prof -- /bin/sh -c 'grep Seccomp: /proc/self/status | cut -f2')"
    us=$(ctr --seccomp $prof -- /bin/sh -c 'unshare -U true 2>&1; echo "rc=$?"' | xargs)
    gf=$(ctr --seccomp $prof -- python3 -c "$PIDFD")
    if [ $prof = moby ]; then
        expect "[moby] unshare -U true" "unshare: unshare failed: Operation not permitted rc=1" "$us"
        expect "[moby] pidfd_getfd" "pidfd_getfd: EPERM" "$gf"
    else
        record "[$prof] unshare -U true" "$us"
        record "[$prof] pidfd_getfd" "$gf"
    fi
done

if [ -x $ENV/venv/bin/python ]; then
    expect "venv python imports mcp" "mcp" "$(ctr --bind $ENV -- $ENV/venv/bin/python -c 'import mcp; print(mcp.__name__)')"
else
    echo "FAIL venv: $ENV/venv missing (cargo xtask setup creates it)"; fails=$((fails + 1))
fi
expect "node" "1" "$(ctr -- /usr/bin/node -e 'console.log(1)')"

# SIGTERM to the harness: the container (pid 1 ignores SIGTERM) is killed and removed.
# (python run directly, not via the ctr function, so that $! is the harness and not a subshell)
/usr/bin/python3 ctr.py run --runtime "$RT" -- /bin/sleep 100 2>/dev/null & pid=$!
sleep 1; kill -TERM $pid; wait $pid
expect "SIGTERM -> exit 143" "143" "$?"

left=$({ $RT list -q | grep '^ctr-'; ls -d /tmp/ctr-bundle-* /sys/fs/cgroup/*/ctr-* 2>/dev/null; } | xargs)
expect "nothing left (containers, bundles, cgroups)" "" "$left"
echo "== $fails failure(s)"
exit $fails

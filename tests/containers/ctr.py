#!/usr/bin/python3
"""Run one command in a throw-away OCI container (runc or crun), stdio passed through.

    ctr.py run [--seccomp moby|containers-common|none|PATH] [--user UID:GID]
               [--bind HOST[:CTR][:rw]]... [--env K=V]... [--nofile SOFT:HARD]
               [--runtime runc|crun] [--cwd DIR] [--net host] -- CMD ARGS...

The rootfs is an empty directory with the host's /usr, /etc (and /bin, /lib, /lib64, /sbin:
symlinks into /usr on a merged-/usr host, bind mounts otherwise) mounted read-only; the
process runs as a non-root user with no capabilities and noNewPrivileges. Only the
container's own output goes to stdout; diagnostics go to stderr. The exit status is the
container process's (128+N when it was killed by signal N).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

sys.dont_write_bytecode = True  # leave no __pycache__ next to the script in the repository
import oci_seccomp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROFILES = {
    "moby": os.path.join(HERE, "profiles/moby-default.json"),
    "containers-common": os.path.join(HERE, "profiles/containers-common.json"),
}
HOST_DIRS = ["/usr", "/bin", "/lib", "/lib64", "/sbin", "/etc"]
# `rro` (recursive read-only, mount_setattr) rather than `ro`: /etc in particular can carry
# submounts (resolv.conf, hosts...) that a plain `ro` rbind would leave writable.
RO_BIND = ["rbind", "rro", "nosuid", "nodev"]
RW_BIND = ["rbind", "nosuid", "nodev"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pair(text):
    a, b = text.split(":")
    return int(a), int(b)


def parse_bind(text):
    """HOST[:CTR][:rw|:ro] -> (host, ctr, writable)."""
    parts = text.split(":")
    writable = parts[-1] == "rw"
    if parts[-1] in ("rw", "ro") and len(parts) > 1:
        parts.pop()
    host = os.path.abspath(parts[0])
    return host, parts[1] if len(parts) > 1 else host, writable


def base_spec(bundle):
    """Start from what `runc spec` writes (maskedPaths, readonlyPaths, /dev, /proc, /sys...)."""
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True, stdout=sys.stderr)
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)


def host_root(spec, rootfs):
    """Mirror the host's system directories read-only into the (empty) rootfs."""
    for d in HOST_DIRS:
        if os.path.islink(d):  # merged /usr: /bin -> usr/bin etc., recreate the symlink
            os.symlink(os.readlink(d), rootfs + d)
        elif os.path.isdir(d):
            spec["mounts"].append({"destination": d, "type": "bind", "source": d, "options": RO_BIND})


def set_process(spec, args):
    p = spec["process"]
    p["terminal"] = False  # no console: runc relays the harness's own stdin/stdout/stderr
    p["args"] = args.cmd
    uid, gid = pair(args.user)
    p["user"] = {"uid": uid, "gid": gid}
    p["cwd"] = args.cwd
    p["env"] = [DEFAULT_PATH, "HOME=/tmp", *args.env]
    p["capabilities"] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    p["noNewPrivileges"] = True
    soft, hard = pair(args.nofile)
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]


def set_mounts(spec, args, rootfs):
    spec["root"] = {"path": rootfs, "readonly": True}
    host_root(spec, rootfs)
    spec["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]})
    for host, ctr, writable in map(parse_bind, args.bind):
        spec["mounts"].append({"destination": ctr, "type": "bind", "source": host,
                               "options": RW_BIND if writable else RO_BIND})


def set_linux(spec, args, cid):
    linux = spec["linux"]
    if args.net == "host":  # no network namespace: share the host's
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    linux["cgroupsPath"] = f"/{cid}"  # top-level, so `delete` leaves no parent directory behind
    if args.seccomp != "none":
        # No capabilities are held, so only the cap-free entries of the profile apply.
        linux["seccomp"] = oci_seccomp.load(PROFILES.get(args.seccomp, args.seccomp), caps=())
    spec["hostname"] = "mcp-warden"


def build_bundle(bundle, args, cid):
    rootfs = os.path.join(bundle, "rootfs")
    os.mkdir(rootfs)
    spec = base_spec(bundle)
    set_process(spec, args)
    set_mounts(spec, args, rootfs)
    set_linux(spec, args, cid)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)


def delete(runtime, cid):
    """Kill and remove the container; quiet, since `run` normally removed it already."""
    subprocess.run([runtime, "delete", "--force", cid],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait(proc, runtime, cid, stopped):
    """Wait for `runtime run`; once we were told to stop, kill the container for sure.

    Forwarding the signal is not enough: the command is pid 1 of its namespace and so
    ignores every signal it has no handler for. `delete --force` is repeated because the
    signal may come before the runtime has created the container.
    """
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stopped:
                delete(runtime, cid)


def run(args):
    cid = f"ctr-{uuid.uuid4().hex[:12]}"
    stopped = []  # Ctrl-C / SIGTERM / SIGHUP received: exit 128+sig after cleaning up
    old = {s: signal.signal(s, lambda n, _f: stopped.append(n))
           for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    bundle = tempfile.mkdtemp(prefix="ctr-bundle-")
    code = 1
    try:
        build_bundle(bundle, args, cid)
        if not stopped:
            # Foreground `run`, stdio inherited from us: runc relays it to/from the process
            # byte for byte through pipes, crun hands our descriptors over as they are.
            proc = subprocess.Popen([args.runtime, "run", "--bundle", bundle, cid])
            code = wait(proc, args.runtime, cid, stopped)
    finally:
        delete(args.runtime, cid)
        shutil.rmtree(bundle, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)
    if stopped:
        print(f"ctr.py: stopped by signal {stopped[0]}, container removed", file=sys.stderr)
        return 128 + stopped[0]
    return code if code >= 0 else 128 - code


def main(argv):
    ap = argparse.ArgumentParser(prog="ctr.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seccomp", default="moby", help="moby | containers-common | none | PATH")
    r.add_argument("--user", default="65534:65534")
    r.add_argument("--bind", action="append", default=[], help="HOST[:CTR][:rw], read-only unless :rw")
    r.add_argument("--env", action="append", default=[], help="K=V")
    r.add_argument("--nofile", default="1024:1024", help="SOFT:HARD (runc spec's default)")
    r.add_argument("--runtime", default="runc", choices=["runc", "crun"])
    r.add_argument("--cwd", default="/")
    r.add_argument("--net", default="none", choices=["none", "host"])
    r.add_argument("cmd", nargs="+")
    args = ap.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

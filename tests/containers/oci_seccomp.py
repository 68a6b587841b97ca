#!/usr/bin/python3
"""Turn a docker/containers-format seccomp profile into an OCI `linux.seccomp` object.

The docker format (moby's profiles/seccomp/default.json, containers/common's
pkg/seccomp/seccomp.json) adds `archMap` and per-entry `includes`/`excludes` conditions
on capabilities, architectures and kernel version; OCI runtimes (runc, crun) understand
none of that. The filtering below follows moby's setupSeccomp (vendor/github.com/moby/
profiles/seccomp/seccomp_linux.go): the native arch is compared by its libseccomp name
("amd64" here), capabilities against the container's bounding set, minKernel against
major.minor of the running kernel. containers/common's symbolic `errno`/`defaultErrno`
are resolved the way its getErrno does (they win over the numeric field when present).

Usage: oci_seccomp.py PROFILE [CAP...]   prints the OCI object as JSON.
"""
import errno
import json
import os
import sys

NATIVE_ARCH = "amd64"  # libseccomp's name for x86_64, what moby matches `arches` against
NATIVE_SCMP_ARCH = "SCMP_ARCH_X86_64"
# Fields of a syscall entry that OCI's LinuxSyscall has; the rest (comment, errno, includes,
# excludes, name) are docker-format only and runc would ignore or reject them.
OCI_SYSCALL_FIELDS = ("names", "action", "errnoRet", "args")


def kernel_version():
    """(major, minor) of the running kernel, e.g. (6, 18) for 6.18.44-fc-v595."""
    major, minor = os.uname().release.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()))


def parse_version(text):
    major, minor = str(text).split(".")[:2]
    return int(major), int(minor)


def errno_value(name, numeric):
    """containers/common writes both `errno: "EPERM"` and `errnoRet: 1`; the name wins there."""
    if not name:
        return numeric
    return int(name) if str(name).isdigit() else getattr(errno, name)


def applies(entry, caps, kernel):
    """Whether a docker-format syscall entry is kept, given held `caps` and the `kernel`."""
    exc = entry.get("excludes") or {}
    if NATIVE_ARCH in exc.get("arches", []):
        return False
    if any(c in caps for c in exc.get("caps", [])):
        return False
    if exc.get("minKernel") and kernel >= parse_version(exc["minKernel"]):
        return False
    inc = entry.get("includes") or {}
    if inc.get("arches") and NATIVE_ARCH not in inc["arches"]:
        return False
    if not all(c in caps for c in inc.get("caps", [])):
        return False
    if inc.get("minKernel") and kernel < parse_version(inc["minKernel"]):
        return False
    return True


def oci_syscall(entry):
    names = entry.get("names") or [entry["name"]]
    out = {k: entry[k] for k in OCI_SYSCALL_FIELDS if entry.get(k) is not None}
    out["names"] = names
    ret = errno_value(entry.get("errno"), entry.get("errnoRet"))
    if ret is not None:
        out["errnoRet"] = ret
    return out


def is_docker_format(profile):
    return "archMap" in profile or any(
        "includes" in s or "excludes" in s or "name" in s for s in profile.get("syscalls", [])
    )


def convert(profile, caps=(), kernel=None):
    """The OCI linux.seccomp object for x86_64 and the held `caps` (default: none)."""
    if not is_docker_format(profile):
        return profile  # already OCI: pass through untouched
    kernel = kernel or kernel_version()
    caps = set(caps)
    out = {"defaultAction": profile["defaultAction"]}
    ret = errno_value(profile.get("defaultErrno"), profile.get("defaultErrnoRet"))
    if ret is not None:
        out["defaultErrnoRet"] = ret
    # archMap: the native arch plus its sub-arches (x86, x32), as moby does.
    for a in profile.get("archMap", []):
        if a["architecture"] == NATIVE_SCMP_ARCH:
            out["architectures"] = [a["architecture"], *a.get("subArchitectures", [])]
    if "architectures" in profile:
        out["architectures"] = profile["architectures"]
    if profile.get("flags"):
        out["flags"] = profile["flags"]
    out["syscalls"] = [oci_syscall(s) for s in profile.get("syscalls", []) if applies(s, caps, kernel)]
    return out


def load(path, caps=()):
    with open(path) as f:
        return convert(json.load(f), caps)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    json.dump(load(sys.argv[1], sys.argv[2:]), sys.stdout, indent=1)
    print()

#!/usr/bin/env python3
"""Runs a command under the seccomp filter a systemd unit would put it under, for
systemd_unit.sh (libseccomp's Python binding, Debian's python3-seccomp):

    seccomp_exec.py --allow FILE [--families AF_UNIX,AF_INET,AF_INET6] [--mdwe] -- COMMAND...

--allow: the system calls allowed, one name a line (SystemCallFilter= expanded); any other call
kills the process with SIGSYS, as systemd's filter does (SystemCallErrorNumber= unset). Only the
native architecture is allowed (SystemCallArchitectures=native).
--families: socket() of another address family fails with EAFNOSUPPORT
(RestrictAddressFamilies=).
--mdwe: mmap() asking for writable and executable memory and mprotect()/pkey_mprotect() asking
for executable memory fail with EPERM (MemoryDenyWriteExecute=yes).
The filter is installed with no_new_privs and kept across execve, so COMMAND and its children
run under it.
"""
import argparse
import errno
import os
import socket
import sys

import seccomp

PROT_WRITE, PROT_EXEC = 0x2, 0x4
AF_MAX = 46


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--allow", required=True)
    p.add_argument("--families", default="")
    p.add_argument("--mdwe", action="store_true")
    p.add_argument("command", nargs="+")
    a = p.parse_args()
    names = {l.strip() for l in open(a.allow) if l.strip() and not l.startswith("#")}
    families = [getattr(socket, f) for f in a.families.split(",") if f]
    conditional = {"socket"} if families else set()
    if a.mdwe:
        conditional |= {"mmap", "mprotect", "pkey_mprotect"}

    f = seccomp.SyscallFilter(defaction=seccomp.KILL_PROCESS)
    unknown = []
    for name in sorted(names - conditional):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            unknown.append(name)  # not a call of this architecture (e.g. a 32-bit one)
    if families and "socket" in names:
        for fam in range(AF_MAX):
            action = seccomp.ALLOW if fam in families else seccomp.ERRNO(errno.EAFNOSUPPORT)
            f.add_rule(action, "socket", seccomp.Arg(0, seccomp.EQ, fam))
    if a.mdwe:
        wx = PROT_WRITE | PROT_EXEC
        if "mmap" in names:
            for prot in (0, PROT_WRITE, PROT_EXEC):
                f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, prot))
            f.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx))
        for call in ("mprotect", "pkey_mprotect"):
            if call in names:
                f.add_rule(seccomp.ALLOW, call, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
                f.add_rule(seccomp.ERRNO(errno.EPERM), call,
                           seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
    if unknown:
        print(f"seccomp_exec: not calls of this architecture: {' '.join(unknown)}", file=sys.stderr)
    f.load()
    os.execv(a.command[0], a.command)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where a stuck L1's vCPUs are: asks the QEMU monitor at MONITOR-SOCKET for `info cpus` and every
vCPU's registers, and names each kernel RIP with the L1 kernel's SYSTEM-MAP (symbol+offset).
Used by scripts/nested-kvm.sh when L1 stops making progress.

usage: l1-vcpus.py MONITOR-SOCKET SYSTEM-MAP
"""
import bisect
import re
import socket
import sys


def ask(sock, command):
    """The monitor's answer to `command`, without its echo of the command line."""
    sock.sendall(command.encode() + b"\n")
    answer = read_to_prompt(sock)
    return answer.split("\n", 1)[1] if "\n" in answer else answer


def read_to_prompt(sock):
    out = b""
    try:
        while not out.endswith(b"(qemu) "):
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    return out.decode(errors="replace")


def symbols(path):
    table = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] in "tTwW":
                    table.append((int(parts[0], 16), parts[2]))
    except OSError:
        pass
    table.sort()
    return table


def name(table, address):
    i = bisect.bisect_right([a for a, _ in table], address) - 1
    if i < 0:
        return "?"
    base, sym = table[i]
    return f"{sym}+{address - base:#x}"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    try:
        sock.connect(sys.argv[1])
    except OSError as e:
        print(f"l1-vcpus: no monitor at {sys.argv[1]}: {e}")
        return 1
    read_to_prompt(sock)
    table = symbols(sys.argv[2])
    print(ask(sock, "info cpus").replace("(qemu) ", "").strip())
    registers = ask(sock, "info registers -a")
    for cpu, rip in enumerate(re.findall(r"RIP=([0-9a-f]{16})", registers)):
        address = int(rip, 16)
        where = name(table, address) if address >= 0xFFFF800000000000 else "user/guest mode"
        print(f"vCPU {cpu}: RIP {rip} {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

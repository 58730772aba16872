#!/usr/bin/env python3
"""Keeps a TCG-emulated L1 from sleeping through its own timer: every PERIOD seconds, presses
and releases Shift on L1's PS/2 keyboard through the QEMU monitor at MONITOR-SOCKET, so QEMU
looks at L1's pending interrupts again. Used by scripts/nested-kvm.sh for as long as L1 runs.

Why: QEMU 7.2's TCG can leave a halted L1 vCPU asleep with its LAPIC timer's interrupt already
pending (seen: HLT=1, IF=1, IRR 236, ISR empty, the one-shot timer at 0). With one vCPU nothing
else ever wakes it, and every sleep inside L1 (the tests' timeouts included) then lasts forever.
A key press is an interrupt from a device: QEMU re-evaluates, and L1 takes the timer too. The
keystroke goes to L1's first virtual terminal, which nothing reads.

usage: l1-nudge.py MONITOR-SOCKET PERIOD
"""
import os
import socket
import sys
import time


def press(path):
    """One Shift press through the monitor; quietly nothing when it is busy or gone."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(path)
            seen = b""
            while not seen.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    return
                seen += chunk
            s.sendall(b"sendkey shift\n")
            seen = b""
            while b"(qemu) " not in seen:
                chunk = s.recv(4096)
                if not chunk:
                    return
                seen += chunk
    except OSError:
        pass


def main():
    path, period = sys.argv[1], float(sys.argv[2])
    while True:
        time.sleep(period)
        if not os.path.exists(path):
            continue
        press(path)


if __name__ == "__main__":
    main()

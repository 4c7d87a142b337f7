#!/usr/bin/env python3
"""Writes the agent's symbol-ordering file from two profiles of the same binary.

Usage: symbol_order.py BINARY CALLGRIND_DIR TCG_LOG OUT

- CALLGRIND_DIR holds callgrind.* files of the agent run on the host (valgrind).
- TCG_LOG is a QEMU `-d in_asm` log of a guest running the agent (empty path: none). QEMU
  logs every block of guest code it translates, with its address and bytes; a block is the
  agent's when its bytes equal the binary's at that address (busybox, which containers run,
  is also linked at 0x400000 and overlaps).

Output order: functions the agent ran in the guest, then those only seen on the host, then
the container-init helper's (it is the same binary, re-executed in each container). Only
names defined in BINARY are written.
"""
import bisect
import glob
import re
import subprocess
import sys


def text_symbols(binary):
    out = subprocess.run(["nm", "-S", "-n", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW":
            syms.append((int(p[0], 16), int(p[1], 16), p[3]))
    return syms


def callgrind_functions(work, binary_name):
    """Function names callgrind saw run in the object whose path ends in binary_name."""
    entry = re.compile(r"^(c?fn|c?ob)=\((\d+)\)(?: (.*))?$")
    found = []
    for path in sorted(glob.glob(f"{work}/callgrind.*")):
        names = {"fn": {}, "ob": {}}
        ob = None
        for line in open(path, errors="replace"):
            m = entry.match(line.rstrip("\n"))
            if not m:
                continue
            kind, ident, name = m.group(1), m.group(2), m.group(3)
            table = names[kind.lstrip("c")]
            if name is not None:
                table[ident] = name
            name = table.get(ident)
            if kind == "ob":
                ob = name
            elif kind == "fn" and ob is not None and ob.endswith("/" + binary_name):
                found.append(name)
    return found


def tcg_functions(log, binary, syms):
    """Functions containing code QEMU translated whose bytes are the binary's own."""
    segs = []
    headers = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                             check=True).stdout
    for line in headers.splitlines():
        p = line.split()
        if p and p[0] == "LOAD" and "E" in p[6:-1]:
            segs.append((int(p[2], 16), int(p[1], 16), int(p[4], 16)))
    data = open(binary, "rb").read()
    starts = [s[0] for s in syms]
    insn = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{2} )+)")
    found = []
    for line in open(log, errors="replace"):
        m = insn.match(line)
        if not m:
            continue
        addr = int(m.group(1), 16)
        seg = next((s for s in segs if s[0] <= addr < s[0] + s[2]), None)
        if seg is None:
            continue
        want = bytes.fromhex(m.group(2).replace(" ", ""))
        off = seg[1] + addr - seg[0]
        if data[off:off + len(want)] != want:
            continue
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and syms[i][0] <= addr < syms[i][0] + max(syms[i][1], 1):
            found.append(syms[i][2])
    return found


def main():
    binary, work, log, out = sys.argv[1:5]
    syms = text_symbols(binary)
    defined = {s[2] for s in syms}
    guest = tcg_functions(log, binary, syms) if log else []
    host = callgrind_functions(work, binary.rsplit("/", 1)[-1])
    helper = re.compile(r"12cocoon_agent7runtime6helper")
    seen, agent_part, helper_part = set(), [], []
    for name in guest + host:
        if name in defined and name not in seen:
            seen.add(name)
            (helper_part if helper.search(name) else agent_part).append(name)
    with open(out, "w") as f:
        f.write("\n".join(agent_part + helper_part) + "\n")
    only_host = len(seen - set(guest))
    print(f"{out}: {len(seen)} functions ({len(seen) - only_host} seen in the guest, "
          f"{only_host} only on the host; {len(helper_part)} of the container-init helper)")


if __name__ == "__main__":
    main()

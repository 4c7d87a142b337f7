#!/usr/bin/env python3
"""Compare the wire-relevant facts of two .proto trees.

Usage: compare_protos.py OURS_DIR UPSTREAM_DIR [FILE ...]

Extracts, per file: package, every message/enum (nested names joined by '.'), every field as
(label, type, name, number), every enum value, and every service RPC (name, request, response) in
declaration order. Comments, whitespace and options are ignored. Prints the differences and exits 1
if there are any.
"""
import re
import sys
from pathlib import Path

TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|\d+|[{}();=<>,\[\]]')


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def facts(path):
    toks = TOKEN.findall(strip_comments(Path(path).read_text()))
    out = []
    scope = []  # stack of (kind, name)
    i = 0
    while i < len(toks):
        t = toks[i]
        if t == "package":
            out.append(("package", toks[i + 1]))
            i += 3
        elif t in ("message", "enum", "service", "oneof") and i + 2 < len(toks) and toks[i + 2] == "{":
            scope.append((t, toks[i + 1]))
            if t != "oneof":
                out.append((t, ".".join(n for k, n in scope if k != "oneof")))
            i += 3
        elif t == "}":
            if scope:
                scope.pop()
            i += 1
        elif t in ("syntax", "import", "option"):
            while toks[i] != ";":
                i += 1
            i += 1
        elif t == "rpc":
            # rpc Name ( [stream] Req ) returns ( [stream] Resp ) ;|{...}
            name = toks[i + 1]
            j = i + 3
            req = toks[j] if toks[j] != "stream" else "stream " + toks[j + 1]
            while toks[j] != "returns":
                j += 1
            resp = toks[j + 2] if toks[j + 2] != "stream" else "stream " + toks[j + 3]
            svc = ".".join(n for _, n in scope)
            out.append(("rpc", svc, name, req, resp))
            while toks[j] not in (";", "{"):
                j += 1
            if toks[j] == "{":
                while toks[j] != "}":
                    j += 1
            i = j + 1
        elif scope and scope[-1][0] == "enum":
            # NAME = N ;
            out.append(("enumval", ".".join(n for _, n in scope), t, toks[i + 2]))
            i += 4
        elif scope:
            # [repeated|optional] type name = N ; | map < k , v > name = N ;
            label = ""
            if t in ("repeated", "optional"):
                label = t
                i += 1
            if toks[i] == "map":
                ftype = "map<%s,%s>" % (toks[i + 2], toks[i + 4])
                i += 6
            else:
                ftype = toks[i]
                i += 1
            name, num = toks[i], toks[i + 2]
            i += 3
            while toks[i] != ";":
                i += 1
            i += 1
            owner = ".".join(n for k, n in scope if k != "oneof")
            oneof = [n for k, n in scope if k == "oneof"]
            out.append(("field", owner, label + (" oneof " + oneof[-1] if oneof else ""), ftype, name, num))
        else:
            i += 1
    return out


def main():
    ours, upstream = Path(sys.argv[1]), Path(sys.argv[2])
    files = sys.argv[3:] or ["agent.proto", "health.proto", "types.proto", "oci.proto"]
    bad = 0
    for f in files:
        a, b = facts(ours / f), facts(upstream / f)
        sa, sb = set(a), set(b)
        for x in sorted(sb - sa, key=str):
            print(f"{f}: missing (upstream has) {x}")
            bad += 1
        for x in sorted(sa - sb, key=str):
            print(f"{f}: extra (not upstream) {x}")
            bad += 1
        rpcs_a = [x for x in a if x[0] == "rpc"]
        rpcs_b = [x for x in b if x[0] == "rpc"]
        if rpcs_a != rpcs_b and set(rpcs_a) == set(rpcs_b):
            print(f"{f}: RPC order differs from upstream")
            bad += 1
        n_fields = sum(1 for x in a if x[0] == "field")
        print(f"{f}: {len(rpcs_a)} rpcs, {n_fields} fields compared")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Every value of the chart is documented: each key in values.yaml has a `# --` comment right
above it, or is a section whose keys all do (keys inside a documented value are examples).

    values-doc.py deploy/helm/framewire/values.yaml
"""
import re
import sys

KEY = re.compile(r"^(\s*)(-\s+)?([A-Za-z_][\w.-]*|\"[^\"]+\"):(\s|$)")
lines = open(sys.argv[1]).read().splitlines()
entries = []  # (line no, indent, key, documented)
doc = False
for n, line in enumerate(lines, 1):
    s = line.strip()
    if s.startswith("# --"):
        doc = True
        continue
    if s.startswith("#"):
        continue  # a doc comment may span several lines
    if not s:
        doc = False
        continue
    m = KEY.match(line)
    if not m:
        doc = False
        continue
    indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
    entries.append((n, indent, m.group(3), doc))
    doc = False

missing = []
for i, (n, indent, key, documented) in enumerate(entries):
    # Inside a documented ancestor? Then this key is part of its example value.
    ancestors, cur = [], indent
    for pn, pind, pkey, pdoc in reversed(entries[:i]):
        if pind < cur:
            ancestors.append(pdoc)
            cur = pind
    if any(ancestors) or documented:
        continue
    has_children = i + 1 < len(entries) and entries[i + 1][1] > indent
    if not has_children:
        missing.append(f"{sys.argv[1]}:{n}: value `{key}` has no `# --` description")
for m in missing:
    print(m)
sys.exit(1 if missing else 0)

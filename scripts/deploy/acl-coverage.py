#!/usr/bin/env python3
"""The KafkaUser the chart renders allows everything the services need.

    acl-coverage.py RENDERED.yaml NEEDS.json...

RENDERED.yaml: one rendered release (helm template). NEEDS.json: the output of
`framewire-<service> --config <its rendered TOML> --print-kafka-acls`, one per service: the
topics and consumer groups that configuration uses, with the operations on each, computed by
the binary from its own settings (so a renamed topic or group cannot slip past a copied list).

A need is covered by an ACL of the same resource type whose `literal` name equals it, or whose
`prefix` starts it (a prefixed need, like ingest's per-replica control groups, needs a prefix
ACL that starts its prefix), allowing each operation (or All). Exit 1 with one line per
uncovered need.
"""
import json
import sys

import yaml


def covers(acl, need, op):
    r = acl["resource"]
    if r["type"] != need["resource_type"] or acl.get("type", "allow") != "allow":
        return False
    ops = acl["operations"]
    if op not in ops and "All" not in ops:
        return False
    if r.get("patternType", "literal") == "literal":
        return need["pattern_type"] == "literal" and r["name"] == need["name"]
    return need["name"].startswith(r["name"])


def main():
    users = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") == "KafkaUser"]
    if len(users) != 1:
        print(f"{sys.argv[1]}: expected one KafkaUser, found {len(users)}")
        return 1
    user = users[0]
    acls = user["spec"]["authorization"]["acls"]
    missing, checked = [], 0
    for path in sys.argv[2:]:
        needs = json.load(open(path))
        for need in needs["grants"]:
            for op in need["operations"]:
                checked += 1
                if not any(covers(a, need, op) for a in acls):
                    missing.append(
                        f"{needs['service']} needs {op} on {need['resource_type']} "
                        f"{need['pattern_type']} {need['name']!r} ({need['why']}): no ACL of "
                        f"KafkaUser {user['metadata']['name']} allows it")
    for m in missing:
        print(m)
    if not missing:
        print(f"{checked} operations of {len(sys.argv) - 2} services covered by {len(acls)} ACLs")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Offline JSON schemas for kubeconform.

    schemas.py crd OUT_DIR CRD.yaml...
    schemas.py k8s OUT_DIR SRC_DIR MANIFEST.yaml...

crd: from CustomResourceDefinition YAML (deploy/schemas/crds, upstream KEDA, Prometheus
operator and Strimzi CRDs), writes OUT_DIR/<group>/<kind>_<version>.json (kubeconform's
`{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json` layout) from each served
version's openAPIV3Schema. Like kubeconform's own openapi2jsonschema in strict mode, objects
that list their properties get additionalProperties: false (unless the CRD preserves unknown
fields there), so a misspelt field fails validation instead of being ignored.

k8s: from the Kubernetes schemas the kubernetes-validate package ships (SRC_DIR =
kubernetes-json-schema/v<version>-local-strict), writes a self-contained schema (the shared
definitions inlined under $defs) for each kind found in the manifests, in kubeconform's
`<kind>-<group>-<version>.json` naming. kubernetes-validate's schemas point at
/api/_definitions.json, which kubeconform cannot resolve from a file.
"""
import json
import os
import sys

import yaml


def strict(node):
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node \
                and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        # int-or-string fields are typed as strings or integers by Kubernetes.
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def k8s(out, src, manifests):
    wanted = set()
    for path in manifests:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc and "apiVersion" in doc and "kind" in doc:
                    group, _, version = doc["apiVersion"].rpartition("/")
                    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
                    wanted.add(doc["kind"].lower() + suffix)
    prefix = '"/api/_definitions.json#/$defs/'
    defs = None
    os.makedirs(out, exist_ok=True)
    for name in sorted(wanted):
        target = os.path.join(out, name + ".json")
        source = os.path.join(src, name + ".json")
        if os.path.exists(target) or not os.path.exists(source):
            continue  # cached, or a custom resource (crd schemas)
        if defs is None:
            with open(os.path.join(src, "_definitions.json")) as f:
                defs = json.loads(f.read().replace(prefix, '"#/$defs/'))["$defs"]
        with open(source) as f:
            schema = json.loads(f.read().replace(prefix, '"#/$defs/'))
        schema.pop("$id", None)
        schema["$defs"] = defs
        with open(target + ".tmp", "w") as f:
            json.dump(schema, f)
        os.replace(target + ".tmp", target)


def crd(out, paths):
    for path in paths:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"].lower()
                for ver in crd["spec"]["versions"]:
                    if not ver.get("served", True):
                        continue
                    schema = strict(ver["schema"]["openAPIV3Schema"])
                    # apiVersion/kind/metadata are checked by kubeconform itself.
                    props = schema.setdefault("properties", {})
                    props.setdefault("apiVersion", {"type": "string"})
                    props.setdefault("kind", {"type": "string"})
                    props.setdefault("metadata", {"type": "object"})
                    d = os.path.join(out, group)
                    os.makedirs(d, exist_ok=True)
                    with open(os.path.join(d, f"{kind}_{ver['name']}.json"), "w") as f:
                        json.dump(schema, f)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "crd":
        crd(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "k8s":
        k8s(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)

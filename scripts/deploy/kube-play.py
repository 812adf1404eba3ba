#!/usr/bin/env python3
"""Turn rendered chart objects into what `podman kube play` runs, without changing the pods.

    kube-play.py RENDERED.yaml [--only COMPONENT | --except COMPONENT] > PLAY.yaml

--only/--except select workloads by their app.kubernetes.io/component label (ConfigMaps are
always kept: podman resolves configMap volumes against the same file).

Kept: ConfigMaps (but for Service names, below) and Deployments as they are (podman runs one
replica of a Deployment).
Converted: a StatefulSet becomes the pods its controller would create, <name>-0 … <name>-(n-1),
with the same spec, the pod name as hostname, and an env var taken from the pod's own name
(fieldRef metadata.name: ingest's [ingest] instance_id, its static lease-group membership)
set to that name, as in a cluster. A pod's `secret` and `projected` volumes of Secrets (found
in the same input: the caller adds those an operator would make, e.g. Strimzi's KafkaUser
Secret) become ConfigMaps with the same files, since podman 4 mounts no Secret volumes.
Dropped: objects podman does not run — Services, NetworkPolicies, PDBs, ServiceAccounts,
Secrets, KEDA, Strimzi and Prometheus-operator objects — and `helm test` pods.
With --network=host podman refuses containerPort declarations (it would map them), so ports
are dropped and the probes' named ports replaced by their numbers; and a Service's name means
this host: in ConfigMaps, "//<service>:" and "//<service>.<namespace>…:" (URLs such as the
test camera's rtsp://<release>-framewire-test-camera:8554/…) become "//127.0.0.1:" (podman 4
drops hostAliases of pods on the host network). Probes stay otherwise;
podman 4 turns only the liveness probe into a health check, so the check script waits for
/readyz itself.
"""
import base64
import copy
import re
import sys

import yaml

def private_volumes(pod, pod_spec):
    """podman makes a named volume of each emptyDir, shared by every pod that uses the same
    volume name; prefixing the pod's name keeps them as private as in Kubernetes."""
    renames = {}
    for v in pod_spec.get("volumes", []):
        if "emptyDir" in v:
            renames[v["name"]] = v["name"] = f"{pod}-{v['name']}"
    for c in pod_spec.get("containers", []):
        for m in c.get("volumeMounts", []):
            m["name"] = renames.get(m["name"], m["name"])


def host_network(pod_spec):
    for c in pod_spec.get("containers", []):
        named = {p["name"]: p["containerPort"] for p in c.pop("ports", []) if "name" in p}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            for action in ("httpGet", "tcpSocket"):
                target = (c.get(probe) or {}).get(action)
                if target and isinstance(target.get("port"), str):
                    target["port"] = named[target["port"]]


def secret_values(secret):
    """A Secret's keys and values as text (stringData wins, as in the API server)."""
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def secret_volumes(pod, pod_spec, secrets, extra):
    """podman 4 mounts only hostPath, configMap, emptyDir and PVC volumes: a `secret` or
    `projected` volume of Secrets becomes a ConfigMap of its own (appended to `extra`) with
    the same files. A Secret that does not exist fails, as the pod would not start."""
    for v in pod_spec.get("volumes", []):
        if "secret" in v:
            sources = [{"secret": {"name": v["secret"]["secretName"], "items": v["secret"].get("items")}}]
        elif "projected" in v:
            sources = v["projected"]["sources"]
        else:
            continue
        files = {}
        for src in sources:
            ref = src.get("secret")
            if ref is None:
                sys.exit(f"{pod}: volume {v['name']}: only Secret sources are converted, not {list(src)}")
            if ref["name"] not in secrets:
                sys.exit(f"{pod}: volume {v['name']}: Secret {ref['name']} not found")
            values = secret_values(secrets[ref["name"]])
            for item in ref.get("items") or [{"key": k, "path": k} for k in values]:
                if item["key"] not in values:
                    sys.exit(f"{pod}: Secret {ref['name']} has no key {item['key']}")
                files[item["path"]] = values[item["key"]]
        name = f"{pod}-{v['name']}"
        extra.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": files})
        for key in ("secret", "projected"):
            v.pop(key, None)
        v["configMap"] = {"name": name}


def pod_name_env(pod, pod_spec):
    """Env vars from the downward API's metadata.name get the pod's name as a plain value."""
    for c in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("fieldRef") or {}
            if ref.get("fieldPath") == "metadata.name":
                e.pop("valueFrom")
                e["value"] = pod


def services_on_this_host(configmap, services):
    """URLs naming a Service of the release point at 127.0.0.1, where its pod listens."""
    if not services:
        return
    names = "|".join(re.escape(n) for n in sorted(services, key=len, reverse=True))
    url_host = re.compile(rf"//(?:{names})(?:\.[a-z0-9.-]+)?:")
    for k, v in (configmap.get("data") or {}).items():
        configmap["data"][k] = url_host.sub("//127.0.0.1:", v)


only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
skip = sys.argv[sys.argv.index("--except") + 1] if "--except" in sys.argv else None
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
out = []
for doc in docs:
    kind = doc["kind"]
    component = (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
    if kind != "ConfigMap" and ((only and component != only) or (skip and component == skip)):
        continue
    ann = doc["metadata"].get("annotations") or {}
    if kind == "ConfigMap":
        services_on_this_host(doc, services)
        out.append(doc)
    elif kind == "Deployment":
        doc["spec"]["replicas"] = 1
        host_network(doc["spec"]["template"]["spec"])
        private_volumes(doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        secret_volumes(doc["metadata"]["name"], doc["spec"]["template"]["spec"], secrets, out)
        out.append(doc)
    elif kind == "StatefulSet":
        for i in range(int(doc["spec"].get("replicas", 1))):
            tmpl = copy.deepcopy(doc["spec"]["template"])
            name = f"{doc['metadata']['name']}-{i}"
            tmpl["spec"]["hostname"] = name
            pod_name_env(name, tmpl["spec"])
            host_network(tmpl["spec"])
            private_volumes(name, tmpl["spec"])
            secret_volumes(name, tmpl["spec"], secrets, out)
            out.append({"apiVersion": "v1", "kind": "Pod",
                        # podman 4.3 wrongly applies the 63-character label limit to a bare
                        # Pod's annotation values: checksum/config (64 hex digits) is left out.
                        "metadata": {"name": name, "labels": tmpl["metadata"].get("labels", {})},
                        "spec": tmpl["spec"]})
    elif kind == "Pod" and "helm.sh/hook" not in ann:
        out.append(doc)
# ConfigMaps first: podman resolves configMap volumes against the objects read so far.
out.sort(key=lambda d: d["kind"] != "ConfigMap")
yaml.safe_dump_all(out, sys.stdout, sort_keys=False)

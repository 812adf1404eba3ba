#!/usr/bin/env python3
"""The secret files the pods are told about are there, and camera passwords stay apart.

    secret-files.py RENDERED.yaml...

RENDERED.yaml: one rendered release (helm template, or kustomize build). For each Deployment
or StatefulSet of the services (its container's command starts with framewire-):
- every FRAMEWIRE_…__…_FILE variable names a file that a Secret-backed volume of the container
  (secret or projected) mounts there, so the service finds its setting where the variable
  says (the deploy check's --print-config cannot see this: it runs outside the pod);
- ingest: every [[cameras]] credentials.password_file of its TOML (the ConfigMap behind
  --config) is a file of its camera-credentials volume, mounted at [ingest] credentials_dir
  (default /etc/framewire/camera-credentials), the only directory camera specs may name;
- that directory holds camera passwords only: no FRAMEWIRE_…_FILE variable points inside it,
  no other volume is mounted at, around or inside it, and none of the Secret keys the settings
  variables read (or whole Secrets they come from) is projected into it.
Prints one summary line per file; exit 1 with one line per broken promise.
"""
import posixpath
import sys
import tomllib

import yaml

DEFAULT_CREDENTIALS_DIR = "/etc/framewire/camera-credentials"


def inside(path, directory):
    """`path` is `directory` or below it."""
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def volume_files(volume):
    """{relative path or "*": (secret name, key or "*")} of a secret or projected volume;
    None for other volumes. "*" = a whole Secret (any file name may be one of its keys)."""
    if "secret" in volume:
        sources = [{"secret": {"name": volume["secret"]["secretName"], "items": volume["secret"].get("items")}}]
    elif "projected" in volume:
        sources = volume["projected"]["sources"]
    else:
        return None
    files = {}
    for src in sources:
        ref = src.get("secret")
        if ref is None:
            continue
        items = ref.get("items")
        if items:
            for it in items:
                files[posixpath.normpath(it["path"])] = (ref["name"], it["key"])
        else:
            files.setdefault("*", []).append((ref["name"], "*"))
    return files


def provided(mounts, volumes, path):
    """The (secret, key) pairs of the Secret-backed mount that provides `path`, or []."""
    for m in mounts:
        files = volume_files(volumes.get(m["name"], {}))
        if files is None or not inside(path, m["mountPath"]):
            continue
        rel = posixpath.relpath(posixpath.normpath(path), posixpath.normpath(m["mountPath"]))
        if m.get("subPath"):
            rel = posixpath.join(m["subPath"], rel) if rel != "." else m["subPath"]
        if rel in files:
            return [files[rel]]
        if "*" in files and "/" not in rel and rel != ".":
            return files["*"]
    return []


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    problems, seen = [], {"settings": 0, "cameras": 0}
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        spec = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            cmd = c.get("command") or []
            if not cmd or not cmd[0].startswith("framewire-"):
                continue
            where = f"{path}: {d['kind']} {d['metadata']['name']} ({cmd[0]})"
            mounts = c.get("volumeMounts", [])
            setting_files, setting_keys = [], set()
            for e in c.get("env", []):
                name, value = e["name"], e.get("value")
                if not (name.startswith("FRAMEWIRE_") and "__" in name and name.endswith("_FILE")):
                    continue
                if value is None:
                    problems.append(f"{where}: {name} has no literal value")
                    continue
                keys = provided(mounts, volumes, value)
                if not keys:
                    problems.append(f"{where}: {name}={value} is not a file of any Secret volume mounted in the container")
                setting_files.append((name, value))
                setting_keys.update(keys)
            seen["settings"] += len(setting_files)
            if cmd[0] != "framewire-ingest":
                continue
            # The TOML behind --config.
            cfg_path = cmd[cmd.index("--config") + 1] if "--config" in cmd else None
            toml = None
            for m in mounts:
                v = volumes.get(m["name"], {})
                if cfg_path and "configMap" in v and inside(cfg_path, m["mountPath"]):
                    cm = configmaps.get(v["configMap"]["name"])
                    key = posixpath.relpath(cfg_path, m["mountPath"])
                    if cm and key in (cm.get("data") or {}):
                        toml = tomllib.loads(cm["data"][key])
            if toml is None:
                problems.append(f"{where}: cannot find its configuration {cfg_path} in a rendered ConfigMap")
                continue
            cdir = (toml.get("ingest") or {}).get("credentials_dir", DEFAULT_CREDENTIALS_DIR)
            cred_mounts = [m for m in mounts if m["name"] == "camera-credentials"]
            for m in mounts:
                if m["name"] != "camera-credentials" and (inside(m["mountPath"], cdir) or inside(cdir, m["mountPath"])):
                    problems.append(f"{where}: volume {m['name']} at {m['mountPath']} overlaps the camera credentials directory {cdir}")
            for m in cred_mounts:
                if posixpath.normpath(m["mountPath"]) != posixpath.normpath(cdir):
                    problems.append(f"{where}: camera-credentials is mounted at {m['mountPath']}, not at [ingest] credentials_dir {cdir}")
                files = volume_files(volumes.get("camera-credentials", {})) or {}
                for rel, ref in files.items():
                    for secret, key in (ref if rel == "*" else [ref]):
                        for s_secret, s_key in setting_keys:
                            if secret == s_secret and (key == s_key or "*" in (key, s_key)):
                                problems.append(f"{where}: Secret {secret} key {key} is projected into {cdir}, but a setting variable reads {s_secret} key {s_key}")
            for name, value in setting_files:
                if inside(value, cdir):
                    problems.append(f"{where}: {name}={value} points inside the camera credentials directory {cdir} (ingest refuses to start)")
            for cam in toml.get("cameras", []):
                pf = (cam.get("credentials") or {}).get("password_file")
                if pf is None:
                    continue
                full = pf if pf.startswith("/") else posixpath.join(cdir, pf)
                if not inside(full, cdir) or posixpath.normpath(full) == posixpath.normpath(cdir):
                    problems.append(f"{where}: camera {cam.get('id')}: password_file {pf} is outside {cdir}")
                elif not (cred_mounts and provided(cred_mounts, volumes, full)):
                    problems.append(f"{where}: camera {cam.get('id')}: password_file {pf} is not a file of the camera-credentials volume")
                else:
                    seen["cameras"] += 1
    return problems, seen


bad = 0
for f in sys.argv[1:]:
    problems, seen = check(f)
    for p in problems:
        print(p, file=sys.stderr)
    bad += len(problems)
    if not problems:
        print(f"{posixpath.basename(f)}: FRAMEWIRE_…_FILE variables: {seen['settings']}, camera password_file: {seen['cameras']}")
sys.exit(1 if bad else 0)

#!/usr/bin/env python3
"""The Dockerfile's promises, checked (hadolint checks the generic rules separately).

    lint-dockerfile.py DOCKERFILE DOCKERIGNORE BIN_NAMES

BIN_NAMES: the workspace's service binaries, comma-separated (from `cargo metadata`).
Prints one line per problem and exits 1 when there is any.
"""
import json
import re
import sys

dockerfile, dockerignore, bins = sys.argv[1], sys.argv[2], sorted(sys.argv[3].split(","))
problems = []


def problem(msg):
    problems.append(msg)


# Logical lines (continuations joined), comments dropped, grouped by stage.
lines, cur = [], ""
for raw in open(dockerfile).read().splitlines():
    s = raw.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if s.startswith("#"):
        continue
    cur += " " + s[:-1] if s.endswith("\\") else " " + s
    if not s.endswith("\\"):
        lines.append(cur.strip())
        cur = ""

args, stages = {}, []
for line in lines:
    op, _, rest = line.partition(" ")
    op = op.upper()
    if op == "ARG" and not stages:
        k, _, v = rest.partition("=")
        args[k] = v
    elif op == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
        stages.append({"from": m.group(1), "name": (m.group(2) or "").lower(), "ops": []})
    elif stages:
        stages[-1]["ops"].append((op, rest))
by_name = {s["name"]: s for s in stages}


def ops(stage, op):
    return [r for o, r in stage["ops"] if o == op]


# 1. Multi-stage, with a dependency layer built before the sources are copied (cargo-chef).
if len(stages) < 3:
    problem(f"expected a multi-stage build, found {len(stages)} stage(s)")
build = by_name.get("build")
if not build:
    problem("no `build` stage")
else:
    seq = [(o, r) for o, r in build["ops"] if o in ("RUN", "COPY")]
    cook = next((i for i, (o, r) in enumerate(seq) if o == "RUN" and "cargo chef cook" in r), None)
    copy_all = next((i for i, (o, r) in enumerate(seq) if o == "COPY" and re.fullmatch(r"\.\s+\.", r)), None)
    if cook is None:
        problem("build stage: no `cargo chef cook` dependency layer")
    elif copy_all is None or copy_all < cook:
        problem("build stage: the sources must be copied after `cargo chef cook` (else every change rebuilds the dependencies)")
    cook_cmd = next((r for o, r in seq if o == "RUN" and "cargo chef cook" in r), "")
    for b in bins:
        if f"-p {b}" not in cook_cmd:
            problem(f"build stage: `cargo chef cook` must select -p {b} like the build (else the dependency layer is built with other features)")
    cargo = [r for o, r in seq if o == "RUN" and "cargo auditable build" in r]
    if not cargo or not all(f in cargo[0] for f in ("--release", "--locked")):
        problem("build stage: `cargo auditable build --release --locked` missing (the image must carry release binaries from "
                "the lock file, with the list of crates they were built from embedded for the image's SBOM)")
    copied = sorted(set(re.findall(r"target/release/(framewire-[a-z-]+)", " ".join(cargo))))
    if copied != bins:
        problem(f"build stage copies {copied}, the workspace's binaries are {bins}")
    for b in bins:
        if f"-p {b}" not in cargo[0] if cargo else True:
            problem(f"build stage: `cargo auditable build` does not name -p {b}")

# 2. One Dockerfile for amd64 and arm64: no stage names an architecture's library directory.
for line in lines:
    for triplet in sorted(set(re.findall(r"\b(x86_64|aarch64)-linux-gnu\b", line))):
        problem(f"names the {triplet}-linux-gnu library directory, which the other architecture's image lacks: {line}")

# 3. Runtime stages: non-root numeric user, no shell needed, smoke-tested binaries, labels.
rt_base = by_name.get("runtime-base")
if not rt_base:
    problem("no `runtime-base` stage")
else:
    labels = " ".join(ops(rt_base, "LABEL"))
    for key in ("title", "description", "source", "licenses", "version", "revision", "created", "documentation", "base.name"):
        if f"org.opencontainers.image.{key}=" not in labels:
            problem(f"runtime-base: OCI label org.opencontainers.image.{key} missing")
runtime_default = args.get("RUNTIME_IMAGE", "")
if "distroless" not in runtime_default:
    problem(f"default RUNTIME_IMAGE {runtime_default!r} is not a distroless (shell-less) base")
if "debian12" in runtime_default and "bookworm" not in args.get("RUST_IMAGE", ""):
    problem("RUST_IMAGE must be bookworm (Debian 12) to match the glibc of the distroless debian12 runtime")
for name in ("runtime", "prebuilt"):
    st = by_name.get(name)
    if not st:
        problem(f"no `{name}` stage")
        continue
    if st["from"] != "runtime-base":
        problem(f"{name}: must build FROM runtime-base")
    users = ops(st, "USER")
    if not users or not re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1].strip()):
        problem(f"{name}: the last USER must be a numeric non-root uid[:gid], got {users[-1] if users else None!r}")
    for r in ops(st, "RUN"):
        if not r.startswith("["):
            problem(f"{name}: RUN in shell form needs a shell the runtime image does not have: {r}")
    smoke = {json.loads(r)[0] for r in ops(st, "RUN") if r.startswith("[") and json.loads(r)[1:] == ["--version"]}
    if sorted(smoke) != bins:
        problem(f"{name}: --version smoke steps for {sorted(smoke)}, expected {bins}")
    for r in ops(st, "CMD") + ops(st, "ENTRYPOINT"):
        if not r.startswith("["):
            problem(f"{name}: CMD/ENTRYPOINT in shell form needs a shell: {r}")
    copies = " ".join(ops(st, "COPY"))
    if name == "prebuilt" and sorted(re.findall(r"\b(framewire-[a-z-]+)\b", copies)) != bins:
        problem(f"prebuilt: copies {re.findall(r'(framewire-[a-z-]+)', copies)}, expected {bins}")
    if "--chown=65532:65532" not in copies:
        problem(f"{name}: the data dir must be owned by the runtime user (COPY --chown=65532:65532 …)")
if stages and stages[-1]["name"] != "runtime":
    problem("the last stage (the default target) must be `runtime`, the full build")

# 4. .dockerignore keeps the context small and the dependency layer stable.
ignored = {l.strip() for l in open(dockerignore) if l.strip() and not l.startswith("#")}
for must in ("target", ".git", ".stack"):
    if must not in ignored:
        problem(f".dockerignore does not exclude {must}")

for p in problems:
    print(f"Dockerfile: {p}")
sys.exit(1 if problems else 0)

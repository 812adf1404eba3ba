# syntax=docker/dockerfile:1
# One image with the three Framewire binaries. Build: docker build -t framewire .
# Run one: docker run framewire framewire-worker --config /etc/framewire/worker.toml
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# nasm: openh264 silently builds without its assembly (1.4x slower decoding) when it is missing.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nasm cmake pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/framewire-ingest target/release/framewire-worker target/release/framewire-sink /out/ \
 && /out/framewire-ingest --version && /out/framewire-worker --version && /out/framewire-sink --version

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/framewire
EXPOSE 9091 9092 9093 8080
CMD ["framewire-ingest", "--help"]

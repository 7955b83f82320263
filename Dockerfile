# syntax=docker/dockerfile:1
# The Palisade image: one static binary (musl) on a distroless base with no shell and no
# package manager. Every component is a subcommand (`controller`, `agent`, `dns`, `egress`,
# `ingress`). Build: `docker build -t palisade:0.1.0 .`
#
# Stage 1: build. musl-tools gives the C compiler that ring and SQLite (bundled) need for a
# static binary.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
ENV CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p palisade \
 && cp target/x86_64-unknown-linux-musl/release/palisade /palisade \
 && /palisade --version

# Stage 2: run. Static binary, CA bundle and passwd from distroless; non-root by default
# (the agent DaemonSet sets runAsUser: 0 and adds NET_ADMIN only).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /palisade /usr/local/bin/palisade
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/palisade"]

# syntax=docker/dockerfile:1
#
# gcp-aws-bridge container image.
#   docker build -t gcp-aws-bridge .
# Build stage: Rust on Debian bookworm; runtime: distroless cc on Debian 12 (same
# glibc), which carries CA certificates and runs as the unprivileged "nonroot" user.

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-slim-${DEBIAN_SUITE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5

# Dependencies, in their own layer: only the manifests and lock file go in, with
# empty stand-ins for the sources, so this layer is rebuilt only when
# dependencies change. The test kit is a workspace member the service binary
# does not use; its manifest is enough for Cargo to read the workspace.
COPY Cargo.toml Cargo.lock ./
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN mkdir -p src testkit/src \
    && printf 'fn main() {}\n' > src/main.rs \
    && touch src/lib.rs testkit/src/lib.rs \
    && cargo build --release --locked --bin gcp-aws-bridge \
    && rm -rf src

# The service itself. COPY keeps the files' old modification times, so touch
# them to make Cargo rebuild the crate over the stand-ins.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin gcp-aws-bridge \
    && install -D -m 0755 target/release/gcp-aws-bridge /out/gcp-aws-bridge

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/gcp-aws-bridge /usr/local/bin/gcp-aws-bridge
# 65532 is the "nonroot" user of the distroless images.
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
# No arguments: serve. Subcommands: credentials, credential-server, whoami.
ENTRYPOINT ["/usr/local/bin/gcp-aws-bridge"]

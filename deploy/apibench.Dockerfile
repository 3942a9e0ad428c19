# syntax=docker/dockerfile:1
# The apibench CLI as an image, for sharded runs on Kubernetes (deploy/k8s/, docs/DISTRIBUTED.md).
# Build from the repository root, so the whole workspace is the context (.dockerignore keeps
# target/, reports/ and node_modules out of it):
#   docker build -f deploy/apibench.Dockerfile -t REGISTRY/apibench:TAG .
# Stage 1 builds the release binary with the workspace's fat-LTO profile (a few minutes).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p loadgen --bin apibench --locked \
 && cp target/release/apibench /usr/local/bin/apibench

# Stage 2: only the binary and CA certificates, as in the API's image (the generator itself
# speaks plain http:// only); runs as an unprivileged user whose uid the Kubernetes manifests
# name (runAsUser / fsGroup 10001). `sleep` and `tar` stay in
# the image on purpose: deploy/k8s/results-pod.yaml idles on `sleep`, and `kubectl cp` needs tar.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 apibench \
 && useradd --system --uid 10001 --gid 10001 apibench
COPY --from=build /usr/local/bin/apibench /usr/local/bin/apibench
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
# Relative --out paths (the default is reports/<time>-<name>/) land in a writable directory.
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/apibench"]
CMD ["--help"]

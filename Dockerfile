# syntax=docker/dockerfile:1
# The reference API as a small image, for users with Docker (`docker compose up`).
# Stage 1 builds the release binary with the workspace's fat-LTO profile.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p api --locked \
 && cp target/release/api /usr/local/bin/api

# Stage 2: only the binary and CA certificates; runs as an unprivileged user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 api
COPY --from=build /usr/local/bin/api /usr/local/bin/api
USER api
ENV API_LISTEN=0.0.0.0:8080 API_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/api"]

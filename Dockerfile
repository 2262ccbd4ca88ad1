# Redeploy in a container: `docker build -t redeploy .`, then
#   docker run -d --name redeploy -p 8443:8443 -v redeploy-data:/var/lib/redeploy redeploy
# The data folder (database, CA, TLS certificate, first tokens) is the volume /var/lib/redeploy;
# settings come from REDEPLOY_* variables (docs/operations.md), e.g.
#   -e REDEPLOY_HOSTNAMES=mdm.example.org -e REDEPLOY_DATABASE=postgres://…
# crates/redeploy/tests/it/packaging.rs checks that the flags below are ones `redeploy serve`
# takes and that this file and packaging/redeploy.service stay consistent.

# --- build: the release binary, with the Rust toolchain -----------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the versions in Cargo.lock. The caches keep downloads and objects between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin redeploy \
    && cp target/release/redeploy /usr/local/bin/redeploy

# --- runtime: the binary alone on Debian slim, as a user without privileges ---------------------
FROM debian:bookworm-slim AS runtime
# curl for the health check; ca-certificates for outgoing HTTPS (OpenID keys, webhooks).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/redeploy --shell /usr/sbin/nologin redeploy \
    && install -d -o redeploy -g redeploy -m 0700 /var/lib/redeploy
COPY --from=build /usr/local/bin/redeploy /usr/local/bin/redeploy
USER redeploy
VOLUME ["/var/lib/redeploy"]
EXPOSE 8443
# Liveness: /healthz over the server's own TLS, trusting the CA it keeps in the data folder
# (its certificate always names 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--cacert", "/var/lib/redeploy/ca.pem", "https://127.0.0.1:8443/healthz"]
ENTRYPOINT ["redeploy"]
CMD ["serve", "--listen", "0.0.0.0:8443", "--data-dir", "/var/lib/redeploy"]

# syntax=docker/dockerfile:1
#
# The mercato image: the release binary alone on a distroless base (glibc,
# libgcc and CA certificates; no shell, no package manager), run as a
# fixed non-root user. BuildKit is required for the cache mounts.
#
#   docker build -t mercato:dev .
#   docker run --rm -p 8080:8080 mercato:dev                  # embedded mode
#   docker run --rm -p 8080:8080 mercato:dev serve --service orders
#     (one context: distributed mode; see docs/deploy.md)
#
# Kubernetes manifests are in deploy/, operator notes in docs/deploy.md.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The registry and target/ are cache mounts: they persist across builds but
# never become part of a layer, so the binary is copied out in the same step.
# The empty data dir is made here because the runtime image has no shell.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked -p mercato \
    && install -D -m 0755 target/release/mercato /out/mercato \
    && install -d -m 0750 /out/data

# Bookworm on both sides, so the binary finds the glibc it was linked against.
# The :nonroot variant is used for its tag; USER below sets the ids.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="mercato" \
      org.opencontainers.image.description="Mercato e-commerce backend" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/mercato /usr/local/bin/mercato
COPY --from=builder --chown=10001:10001 /out/data /var/lib/mercato
ENV MERCATO_ADDR=0.0.0.0:8080 \
    MERCATO_DATA_DIR=/var/lib/mercato
WORKDIR /var/lib/mercato
# A numeric uid/gid with no passwd entry: Kubernetes' runAsNonRoot can only
# verify a numeric user, and the manifests pin the same ids.
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: the image has no shell or HTTP client to run one with;
# orchestrators probe GET /healthz and GET /readyz on port 8080 instead.
ENTRYPOINT ["/usr/local/bin/mercato"]
CMD ["serve"]

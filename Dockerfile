# syntax=docker/dockerfile:1
#
# waybill image: a release build on Debian bookworm, run on distroless cc
# (glibc, libgcc, CA certificates; no shell, no package manager) as the
# `nonroot` user (65532). Build it and push it to your own registry:
#
#   docker build -t registry.example.com/platform/waybill:0.1.0 .
#   docker push registry.example.com/platform/waybill:0.1.0
#
# then install the chart with --set image.repository=registry.example.com/platform/waybill.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# === build ===
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The build must use exactly the dependency versions in Cargo.lock (--locked).
# The cache mounts keep the registry and target directory between builds; the
# binary is copied out of the target cache in the same step.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin waybill \
 && install -D -m 0755 target/release/waybill /out/waybill

# === runtime ===
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="waybill" \
      org.opencontainers.image.description="Sidecar that turns ERP, WMS, TMS and carrier HTTP traffic into business transactions" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/waybill /usr/local/bin/waybill
# distroless :nonroot already runs as 65532; stated so a scanner and
# Kubernetes' runAsNonRoot check see a numeric non-root user.
USER 65532:65532
# Admin surface: /healthz, /readyz, /metrics, the JSON API. Listener ports
# come from the routes file.
EXPOSE 9901
ENTRYPOINT ["/usr/local/bin/waybill"]
CMD ["--help"]

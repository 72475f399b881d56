# syntax=docker/dockerfile:1
# revoked and revokectl in one static, non-root image: ghcr.io/revoked-dev/revoked.
#   docker build -t ghcr.io/revoked-dev/revoked:dev .

# The builder is pinned to the exact Go release of go.mod's go line (charts_test.go checks
# that they agree), not the floating golang:1.26: a rebuild of the same commit uses the
# same compiler and standard library. A digest pin (golang:1.26.8-bookworm@sha256:...)
# would also fix the OS layers, but it cannot be resolved or checked without a registry;
# add it in CI with `docker buildx imagetools inspect golang:1.26.8-bookworm`.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: no cgo, so they run on distroless/static (no libc).
ENV CGO_ENABLED=0
# What --version and revoked_build_info say, with the Makefile's -X names (make image
# passes them; charts_test.go checks the names agree). .git is not in the build context,
# so Go records no commit: without REVISION the revision is "unknown".
ARG VERSION=""
ARG REVISION=""
RUN LDFLAGS="-s -w -X github.com/revoked-dev/revoked/internal/buildinfo.Version=${VERSION} -X github.com/revoked-dev/revoked/internal/buildinfo.Revision=${REVISION}" && \
    go build -trimpath -ldflags="$LDFLAGS" -o /out/revoked ./cmd/revoked && \
    go build -trimpath -ldflags="$LDFLAGS" -o /out/revokectl ./cmd/revokectl

# distroless publishes no version tags, only rolling ones and digests: pin the digest in
# CI (docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot) for
# reproducible images; the tag keeps this file buildable offline-first.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/revoked /usr/local/bin/revoked
COPY --from=build /out/revokectl /usr/local/bin/revokectl
# distroless "nonroot": uid and gid 65532, the user the Helm chart runs as.
USER 65532:65532
# gRPC ext_authz, HTTP ext_authz, admin (/healthz /readyz /metrics); ingest API and admin.
EXPOSE 9191 9192 9193 9180 9181
ENTRYPOINT ["/usr/local/bin/revoked"]

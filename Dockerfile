# syntax=docker/dockerfile:1
# revoked and revokectl in one static, non-root image: ghcr.io/revoked-dev/revoked.
#   docker build -t ghcr.io/revoked-dev/revoked:dev .

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: no cgo, so they run on distroless/static (no libc).
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/revoked ./cmd/revoked && \
    go build -trimpath -ldflags="-s -w" -o /out/revokectl ./cmd/revokectl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/revoked /usr/local/bin/revoked
COPY --from=build /out/revokectl /usr/local/bin/revokectl
# distroless "nonroot": uid and gid 65532, the user the Helm chart runs as.
USER 65532:65532
# gRPC ext_authz, HTTP ext_authz, admin (/healthz /readyz /metrics); ingest API and admin.
EXPOSE 9191 9192 9193 9180 9181
ENTRYPOINT ["/usr/local/bin/revoked"]

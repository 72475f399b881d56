// Package idp tests revoked against real identity providers run on this machine: Ory
// Hydra (built from its Go module in test/idp/hydra) and panva's oidc-provider (npm, in
// test/idp/oidc-provider). Each test drives a real login and logout through the IdP,
// and checks, with a real NATS server, `revoked ingest` and a `revoked` sidecar asked
// over gRPC as Envoy asks, that an access token allowed before the logout is denied
// after the IdP's back-channel logout (and after RFC 7009 revocation).
//
// The tests need the IdPs installed, so they build only with the idp tag:
// `make test-idp` builds Hydra and revoked, runs npm ci and then
// `go test -tags idp ./test/idp/`.
package idp

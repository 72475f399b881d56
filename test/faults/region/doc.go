// Package region tests revoked across two regions, as issue 10 lays them out: a hub
// NATS server with the revocation stream in JetStream domain "hub", and a region's
// server in its own domain "region-a", a leaf node of the hub, holding a mirror of the
// stream (revokectl stream init --mirror-of hub). The region's sidecars follow the
// mirror. Both servers are real, embedded; the leaf link runs through a proxy that the
// tests cut and heal. BenchmarkHubToRegion measures hub-to-region propagation.
//
// The code is all in _test.go files.
package region

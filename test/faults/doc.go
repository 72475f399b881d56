// Package faults is the fault-injection suite of revoked: it builds the revoked and
// nats-server binaries, runs them as separate processes, publishes a steady flow of
// revocation events and injects faults (NATS killed, a sidecar killed, a sidecar cut
// off from NATS, lost publish acks, a cluster node killed). Each scenario ends with a
// convergence check: every sidecar's replica holds exactly the set of acked events.
//
// Plain `go test ./test/faults` runs the short form; REVOKED_FAULTS=long (make test-faults)
// runs longer and with more faults. The code is all in _test.go files.
package faults

// Package ssf is the Shared Signals receiver of `revoked ingest` (CONTRACT section 5):
// it takes Security Event Tokens (RFC 8417) from the transmitters listed in the
// --ssf-transmitters file, pushed to POST /ssf/events (RFC 8935) or polled (RFC 8936),
// validates them against the transmitter's keys, and turns each CAEP, RISC or legacy
// revocation signal into contract events published through package publish. A SET is
// acknowledged (202, or its jti in the next poll's ack list) only once the stream has
// acknowledged every event it maps to; a SET that fails validation is answered with the
// RFC 8935 error codes and counted, and never published.
//
// The files: config.go (the transmitters file), set.go (SET validation), subject.go
// (subject identifiers, RFC 9493 and SSF 1.0), eventtypes.go (the event types known),
// mapping.go (events to revocations), issuers.go (a subject's iss among token_issuers),
// receiver.go (the pipeline both deliveries share), keywait.go (a SET under a key not
// held yet waits for the keys to be fetched again, at most 5 s), push.go, poll.go,
// manage.go (stream management at the transmitter: discovery, stream, verification),
// oauth.go (the receiver's OAuth access token at the transmitter, client credentials),
// metrics.go.
package ssf

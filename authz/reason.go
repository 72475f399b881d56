// Package authz decides Envoy ext_authz checks: it reads the bearer token of a request,
// verifies it (signature against the issuer's keys, iss, aud, exp, nbf), looks it up in
// the blocklist replica, and answers over gRPC (envoy.service.auth.v3) or Envoy's HTTP
// ext_authz mode with the responses of CONTRACT section 3.
package authz

// Reason is why a check was decided as it was: a closed set, used as the reason label
// of revoked_checks_total and in the dynamic metadata Envoy logs.
type Reason uint8

// Reasons. ReasonOK is the only one that allows.
const (
	ReasonOK            Reason = iota
	ReasonMissingToken         // no authorization header
	ReasonWrongScheme          // an authorization header without a Bearer token
	ReasonMalformed            // not a well-formed JWT, too large, two tokens, crit header
	ReasonBadAlgorithm         // alg outside the fixed list (none, HMAC without a secret, ...)
	ReasonUnknownKey           // no key with the token's kid
	ReasonBadSignature         // signature does not verify
	ReasonExpired              // exp passed (beyond the leeway)
	ReasonNotYetValid          // nbf or iat in the future (beyond the leeway)
	ReasonWrongIssuer          // iss not accepted
	ReasonWrongAudience        // aud not accepted
	ReasonMissingClaim         // exp, or jti when required, missing
	ReasonTooLongLived         // lifetime (exp - iat) longer than the revocation window (--max-token-lifetime), or no iat
	ReasonRevokedJTI           // the token's jti is on the blocklist
	ReasonRevokedCutoff        // a cutoff on sub, sid, client_id... covers the token
	ReasonNotReady             // the replica has not caught up yet: fail closed
	ReasonStale                // the replica is past --max-staleness with --stale-policy=deny
	numReasons
)

var reasonInfo = [numReasons]struct {
	label       string // metric label and metadata value
	description string // error_description; empty for the no-credentials challenge
	status      int    // HTTP status of the denial
}{
	ReasonOK:            {"ok", "", 200},
	ReasonMissingToken:  {"missing_token", "", 401},
	ReasonWrongScheme:   {"wrong_scheme", "", 401},
	ReasonMalformed:     {"malformed", "malformed token", 401},
	ReasonBadAlgorithm:  {"bad_algorithm", "signing algorithm not accepted", 401},
	ReasonUnknownKey:    {"unknown_key", "unknown signing key", 401},
	ReasonBadSignature:  {"bad_signature", "invalid signature", 401},
	ReasonExpired:       {"expired", "token expired", 401},
	ReasonNotYetValid:   {"not_yet_valid", "token not yet valid", 401},
	ReasonWrongIssuer:   {"wrong_issuer", "issuer not accepted", 401},
	ReasonWrongAudience: {"wrong_audience", "audience not accepted", 401},
	ReasonMissingClaim:  {"missing_claim", "required claim missing", 401},
	ReasonTooLongLived:  {"too_long_lived", "token lifetime exceeds the revocation window, or no iat to bound it", 401},
	ReasonRevokedJTI:    {"revoked_jti", "token revoked", 401},
	ReasonRevokedCutoff: {"revoked_cutoff", "token revoked", 401},
	ReasonNotReady:      {"not_ready", "revocation list not yet synced", 503},
	ReasonStale:         {"stale", "revocation list is stale", 503},
}

// String returns the reason's label.
func (r Reason) String() string {
	if r >= numReasons {
		return "unknown"
	}
	return reasonInfo[r].label
}

// Description is the error_description of the denial; empty for ReasonOK and for a
// request without credentials (RFC 6750 3.1: no error attribute then).
func (r Reason) Description() string { return reasonInfo[r].description }

// HTTPStatus is the status Envoy returns to the client for this reason.
func (r Reason) HTTPStatus() int { return reasonInfo[r].status }

// WWWAuthenticate is the challenge sent with a 401, as CONTRACT section 3 fixes it.
func (r Reason) WWWAuthenticate() string {
	if reasonInfo[r].status != 401 {
		return ""
	}
	if r.Description() == "" {
		return `Bearer realm="revoked"`
	}
	return `Bearer error="invalid_token", error_description="` + r.Description() + `"`
}

// Reasons lists every reason, for metrics and tests.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

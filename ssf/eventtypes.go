package ssf

// Event type URIs the receiver knows (CAEP 1.0, RISC 1.0, SSF 1.0, and the legacy ones
// IdPs still send).
const (
	SessionRevoked       = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	CredentialChange     = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	AccountDisabled      = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	AccountPurged        = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	CredentialCompromise = "https://schemas.openid.net/secevent/risc/event-type/credential-compromise"
	SessionsRevoked      = "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked"
	TokensRevoked        = "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked"
	Verification         = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	StreamUpdated        = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"

	// Older spellings of the SSF events: the SSE drafts (Okta) and RISC (Google).
	legacySSEVerification  = "https://schemas.openid.net/secevent/sse/event-type/verification"
	legacyRISCVerification = "https://schemas.openid.net/secevent/risc/event-type/verification"
	legacySSEStreamUpdated = "https://schemas.openid.net/secevent/sse/event-type/stream-updated"
)

// eventKind is what the receiver does with an event type by default.
type eventKind int

const (
	kindUnknown       eventKind = iota
	kindRevokeUser              // a user's tokens (sub cutoff), or one token (jwt_id)
	kindRevokeSession           // a session (sid cutoff), else as kindRevokeUser
	kindVerification
	kindStreamUpdated
)

// knownEvents maps every known type to its kind, its short name (the metrics label and
// the key of a transmitter's events policy) and the contract reason it publishes.
var knownEvents = map[string]struct {
	kind   eventKind
	name   string
	reason string
}{
	SessionRevoked:         {kindRevokeSession, "session-revoked", "session_end"},
	CredentialChange:       {kindRevokeUser, "credential-change", "password_change"},
	AccountDisabled:        {kindRevokeUser, "account-disabled", "admin_revoke"},
	AccountPurged:          {kindRevokeUser, "account-purged", "admin_revoke"},
	CredentialCompromise:   {kindRevokeUser, "credential-compromise", "compromised"},
	SessionsRevoked:        {kindRevokeUser, "sessions-revoked", "session_end"},
	TokensRevoked:          {kindRevokeUser, "tokens-revoked", "other"},
	Verification:           {kindVerification, "verification", ""},
	legacySSEVerification:  {kindVerification, "verification", ""},
	legacyRISCVerification: {kindVerification, "verification", ""},
	StreamUpdated:          {kindStreamUpdated, "stream-updated", ""},
	legacySSEStreamUpdated: {kindStreamUpdated, "stream-updated", ""},
}

// RevocationEvents are the event types a managed stream requests.
var RevocationEvents = []string{SessionRevoked, CredentialChange, AccountDisabled, AccountPurged, CredentialCompromise, SessionsRevoked, TokensRevoked}

// eventName is the short name of an event type: the metrics label, "unknown" for a type
// the receiver does not know (never the URI itself: a transmitter would choose the
// label values).
func eventName(uri string) string {
	if k, ok := knownEvents[uri]; ok {
		return k.name
	}
	return "unknown"
}

// shortName accepts a policy key written as the URI or its last path element.
func shortName(key string) (string, bool) {
	if k, ok := knownEvents[key]; ok {
		return k.name, true
	}
	for _, k := range knownEvents {
		if k.name == key {
			return k.name, true
		}
	}
	return "", false
}

func isRevocation(name string) bool {
	for _, k := range knownEvents {
		if k.name == name {
			return k.kind == kindRevokeUser || k.kind == kindRevokeSession
		}
	}
	return false
}

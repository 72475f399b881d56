// Package event is the revocation event of CONTRACT section 2: its JSON form, its
// validation rules and the NATS subjects it travels on. It does no I/O, so the
// sidecar, revokectl and the ingest API all decode and check events the same way.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxPayload is the largest event payload accepted, in bytes.
const MaxPayload = 4096

// MaxValueLen is the longest jti or cutoff value accepted, in bytes.
const MaxValueLen = 256

// Event types.
const (
	TypeJTI    = "jti"
	TypeCutoff = "cutoff"
)

// Reasons an event may give (CONTRACT section 2).
var Reasons = []string{"logout", "password_change", "compromised", "admin_revoke", "session_end", "other"}

// DefaultCutoffClaims are the claims a cutoff may always name; an operator's
// --cutoff-claim adds to them, never replaces them (a password-change cutoff on sub
// must keep working when a tenant claim is added). client_id also matches a token's azp.
var DefaultCutoffClaims = []string{"sub", "sid", "client_id"}

// CutoffClaimAllowed reports whether a cutoff may name claim: one of
// DefaultCutoffClaims, or one of the operator's extra claims. It is the one place
// this rule lives; every reader of cutoff events (replica, snapshot, ingest) uses it.
func CutoffClaimAllowed(claim string, extra []string) bool {
	return contains(DefaultCutoffClaims, claim) || contains(extra, claim)
}

// ClaimText is the text a cutoff's value is compared with, read from one JSON value
// of a token's claim: a string as it is; a number or a boolean by its JSON text as the
// token has it (tenant: 42 matches "42", 4.2e1 does not); "" (never matches) for
// null, arrays and objects. The sidecar and revokectl explain both read claims by it.
func ClaimText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	case c == '-' || c >= '0' && c <= '9', c == 't' || c == 'f':
		return string(raw)
	}
	return ""
}

// Event is one revocation. Fields a type does not use are left zero.
type Event struct {
	Type      string `json:"type"`
	JTI       string `json:"jti,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Claim     string `json:"claim,omitempty"`
	Value     string `json:"value,omitempty"`
	NotBefore int64  `json:"not_before,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Reason    string `json:"reason,omitempty"`
	RevokedAt int64  `json:"revoked_at,omitempty"`
	RevokedBy string `json:"revoked_by,omitempty"`
	EventID   string `json:"event_id,omitempty"`
	// ClientID narrows a cutoff to the tokens of one client (their client_id or azp):
	// a logout at one app where the IdP's access tokens carry no sid.
	ClientID string `json:"client_id,omitempty"`
	// Source says where the revocation came from (revokectl, api, rfc7009,
	// backchannel-logout, ssf:<issuer>): audit data, never used by decisions.
	Source string `json:"source,omitempty"`
}

// Sentinel errors. Each maps to a rejection reason label (see Reason).
var (
	ErrTooLarge    = errors.New("event: payload larger than 4 KiB")
	ErrNotUTF8     = errors.New("event: payload is not UTF-8")
	ErrMalformed   = errors.New("event: payload is not a JSON object")
	ErrUnknownType = errors.New("event: unknown type")
	ErrInvalid     = errors.New("event: invalid field")
)

// Error carries the sentinel and the detail of a rejected event.
type Error struct {
	Kind   error
	Detail string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Detail }

// Unwrap lets errors.Is match the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(format string, a ...any) error {
	return &Error{Kind: ErrInvalid, Detail: fmt.Sprintf(format, a...)}
}

// Reason returns the short label used for the revoked_events_rejected_total metric.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrNotUTF8), errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnknownType):
		return "unknown_type"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	default:
		return "other"
	}
}

// Decode parses and validates one payload. Unknown JSON fields are ignored, as the
// contract requires; extraClaims are the claims a cutoff may name beyond
// DefaultCutoffClaims (see CutoffClaimAllowed).
func Decode(payload []byte, extraClaims []string) (Event, error) {
	var ev Event
	if len(payload) > MaxPayload {
		return ev, &Error{Kind: ErrTooLarge, Detail: fmt.Sprintf("%d bytes", len(payload))}
	}
	if !utf8.Valid(payload) {
		return ev, &Error{Kind: ErrNotUTF8, Detail: "invalid UTF-8"}
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ev, &Error{Kind: ErrMalformed, Detail: err.Error()}
	}
	return ev, ev.Validate(extraClaims)
}

// Validate checks the event against the contract. extraClaims add to
// DefaultCutoffClaims (a list that repeats them is fine).
func (ev *Event) Validate(extraClaims []string) error {
	switch ev.Type {
	case TypeJTI:
		if err := checkValue("jti", ev.JTI); err != nil {
			return err
		}
		if ev.Exp <= 0 || ev.Exp > maxUnix {
			return invalid("exp %d out of range", ev.Exp)
		}
	case TypeCutoff:
		if !CutoffClaimAllowed(ev.Claim, extraClaims) {
			return invalid("claim %q not allowed", ev.Claim)
		}
		if err := checkValue("value", ev.Value); err != nil {
			return err
		}
		if ev.NotBefore <= 0 || ev.NotBefore > maxUnix {
			return invalid("not_before %d out of range", ev.NotBefore)
		}
		if ev.ClientID != "" {
			if err := checkValue("client_id", ev.ClientID); err != nil {
				return err
			}
		}
	default:
		return &Error{Kind: ErrUnknownType, Detail: fmt.Sprintf("%.32q", ev.Type)}
	}
	if ev.Type == TypeJTI && ev.ClientID != "" {
		// A jti names one token already; a client restriction on it means a
		// publisher misunderstood the schema, and silently ignoring it would hide that.
		return invalid("client_id applies to cutoffs only")
	}
	if len(ev.Source) > MaxValueLen {
		return invalid("source must be at most %d bytes, got %d", MaxValueLen, len(ev.Source))
	}
	if ev.Reason != "" && !contains(Reasons, ev.Reason) {
		return invalid("reason %.32q unknown", ev.Reason)
	}
	return nil
}

// maxUnix is the last second a uint32 holds (year 2106); replicas store times in 32 bits.
const maxUnix = 1<<32 - 1

func checkValue(name, v string) error {
	if len(v) == 0 || len(v) > MaxValueLen {
		return invalid("%s must be 1 to %d bytes, got %d", name, MaxValueLen, len(v))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Subject returns the subject an event is published on under prefix (default "revocations").
func Subject(prefix, typ string) string { return prefix + "." + typ }

// DefaultSubjectPrefix and DefaultStream are the contract's defaults.
const (
	DefaultSubjectPrefix = "revocations"
	DefaultStream        = "REVOCATIONS"
)

package audit

import (
	"slices"
	"time"

	"github.com/revoked-dev/revoked/event"
	revsync "github.com/revoked-dev/revoked/sync"
)

// Finding is one stream event as an audit reports it: where the stream holds it, the
// event as published (its fields flattened into the JSON form), and what it does.
type Finding struct {
	Seq    uint64    `json:"seq"`
	Stored time.Time `json:"stored"`
	event.Event
	// EnforcedNotBefore is the not_before sidecars enforce when it differs from the
	// event's: bounded by the store time plus stream.CutoffAhead.
	EnforcedNotBefore int64   `json:"enforced_not_before,omitempty"`
	Outcome           Outcome `json:"outcome"`
	Why               string  `json:"why,omitempty"` // why sidecars skip it (NotEnforced)
}

// NewFinding describes rec with outcome o; err is the validation error of a
// NotEnforced event.
func NewFinding(rec *Record, o Outcome, err error) Finding {
	f := Finding{Seq: rec.Seq, Stored: rec.Stored.UTC(), Event: rec.Event, Outcome: o}
	if rec.Event.Type == event.TypeCutoff {
		if nb := revsync.EffectiveNotBefore(rec.Event.NotBefore, rec.Stored); nb != rec.Event.NotBefore {
			f.EnforcedNotBefore = nb
		}
	}
	if err != nil {
		f.Why = err.Error()
	}
	return f
}

// Key names what a history lists: the events revoking tokens by that jti, sub, sid,
// client or other claim (any of the keys set), narrowed to one issuer if Iss is set.
type Key struct {
	JTI, Sub, Sid, Client string
	Claim, Value          string // a cutoff on an operator's claim
	Iss                   string // this issuer's events and those naming no issuer (they apply to all)
}

// IsZero reports whether the key names nothing.
func (k Key) IsZero() bool { return k == Key{} }

// Matches reports whether ev belongs to the history of k: a jti event for JTI (or one
// whose audit field sub is Sub: a token of that user); a cutoff on sub = Sub, sid =
// Sid, client_id = Client, Claim = Value, or scoped to client Client. Iss alone lists
// every event that can apply to that issuer's tokens.
func (k Key) Matches(ev *event.Event) bool {
	if k.Iss != "" && ev.Iss != "" && ev.Iss != k.Iss {
		return false
	}
	if k.JTI == "" && k.Sub == "" && k.Sid == "" && k.Client == "" && k.Claim == "" {
		return k.Iss != ""
	}
	switch ev.Type {
	case event.TypeJTI:
		return k.JTI != "" && ev.JTI == k.JTI || k.Sub != "" && ev.Sub == k.Sub
	case event.TypeCutoff:
		switch {
		case k.Client != "" && ev.ClientID == k.Client:
			return true
		case ev.Claim == "sub":
			return k.Sub != "" && ev.Value == k.Sub
		case ev.Claim == "sid":
			return k.Sid != "" && ev.Value == k.Sid
		case ev.Claim == "client_id":
			return k.Client != "" && ev.Value == k.Client
		}
		return k.Claim != "" && ev.Claim == k.Claim && ev.Value == k.Value
	}
	return false
}

// Needles are the strings every event Matches carries in some field (see
// ScanOptions.Needles); none when Iss alone is set, since events without iss match.
func (k Key) Needles() []string {
	var n []string
	for _, v := range []string{k.JTI, k.Sub, k.Sid, k.Client, k.Value} {
		if v != "" && !slices.Contains(n, v) {
			n = append(n, v)
		}
	}
	return n
}

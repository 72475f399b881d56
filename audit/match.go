// Package audit answers "why is this token denied?" and "what was revoked for this
// key?" from the revocation stream itself: it reads a token's claims (unverified),
// scans the stream, and says which events match, under the sidecar's rule.
//
// The rule is the replica's and the blocklist's (blocklist.Set.Check, the keys the
// replica builds, revsync.EffectiveNotBefore, blocklist.Retention), restated over
// event.Event so that each matching event can be named; a property test holds it to
// the blocklist's verdicts.
package audit

import (
	"slices"
	"time"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	revsync "github.com/revoked-dev/revoked/sync"
)

// Outcome is what one event does to one token.
type Outcome string

// Outcomes. Only Revokes denies the token.
const (
	// NoMatch: the event is about other tokens.
	NoMatch Outcome = ""
	// Revokes: a sidecar denies the token because of this event.
	Revokes Outcome = "revokes"
	// IssuedAfter: a cutoff on one of the token's keys, but the token was issued at or
	// after its not_before.
	IssuedAfter Outcome = "issued_after"
	// Lapsed: the event matched the token, but sidecars no longer keep it (a jti
	// entry past its exp, a cutoff past not_before plus the longest token lifetime).
	Lapsed Outcome = "lapsed"
	// NotEnforced: the event names the token, but sidecars skip it: invalid, or a
	// cutoff on a claim they were not started to allow (--cutoff-claim).
	NotEnforced Outcome = "not_enforced"
	// Enforced: (Status, without a token) sidecars keep the event's entry.
	Enforced Outcome = "enforced"
)

// Policy is the part of a sidecar's configuration that decides what an event does.
type Policy struct {
	ExtraClaims []string            // the sidecar's --cutoff-claim
	Retention   blocklist.Retention // its --max-token-lifetime and --leeway
}

// Match says what ev, stored by the stream at stored, does at now to the token t under
// policy p. A cutoff matches when its claim's value is one of the token's (client_id
// also matches azp); an event with iss applies only to tokens of that issuer; a cutoff
// with client_id only to tokens whose client_id or azp equals it; a cutoff revokes a
// token issued before its not_before (bounded as the replica bounds it), or without iat.
func Match(t *Token, ev *event.Event, stored, now time.Time, p Policy) Outcome {
	if ev.Iss != "" && ev.Iss != t.Iss {
		return NoMatch
	}
	switch ev.Type {
	case event.TypeJTI:
		if t.JTI == "" || ev.JTI != t.JTI {
			return NoMatch
		}
	case event.TypeCutoff:
		if !slices.Contains(t.Values(ev.Claim), ev.Value) {
			return NoMatch
		}
		if ev.ClientID != "" && !slices.Contains(t.Clients(), ev.ClientID) {
			return NoMatch
		}
	default:
		return NoMatch
	}
	if st, _ := Status(ev, stored, now, p); st != Enforced {
		return st
	}
	if ev.Type == event.TypeCutoff {
		if nb := revsync.EffectiveNotBefore(ev.NotBefore, stored); t.Iat != 0 && t.Iat >= nb {
			return IssuedAfter
		}
	}
	return Revokes
}

// Status says whether sidecars under policy p enforce ev, stored at stored, at now:
// Enforced, Lapsed, or NotEnforced with the validation error that makes them skip it.
func Status(ev *event.Event, stored, now time.Time, p Policy) (Outcome, error) {
	if err := ev.Validate(p.ExtraClaims); err != nil {
		return NotEnforced, err
	}
	if !Live(ev, stored, now, p.Retention) {
		return Lapsed, nil
	}
	return Enforced, nil
}

// Live reports whether sidecars still keep the entry of a valid event at now.
func Live(ev *event.Event, stored, now time.Time, r blocklist.Retention) bool {
	if ev.Type == event.TypeJTI {
		return r.JTILive(ev.Exp, now.Unix())
	}
	return r.CutoffLive(revsync.EffectiveNotBefore(ev.NotBefore, stored), now.Unix())
}

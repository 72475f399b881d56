package ssf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/revoked-dev/revoked/event"
)

// allSessions is the session id Keycloak sends when an admin logs out every session of
// a user: a cutoff on the user, not on a session named "ALL".
const allSessions = "ALL"

// plan is what one SET asks for.
type plan struct {
	kind   eventKind
	name   string // the event's short name, "unknown" for an unknown type
	policy Policy
	events []event.Event // the revocations (revoke and dry-run)
	state  string        // verification: the state the receiver asked for
	status string        // stream-updated: enabled, paused, disabled
	reason string        // stream-updated: the transmitter's reason
}

// mapSET turns a validated SET into the revocations CONTRACT section 5's table gives,
// under the transmitter's policy for the event type.
func mapSET(t *Transmitter, ev *secEvent, lifetime time.Duration, now time.Time) (plan, error) {
	info, known := knownEvents[ev.eventType]
	p := plan{kind: info.kind, name: eventName(ev.eventType)}
	if !known {
		return p, nil
	}
	switch info.kind {
	case kindVerification:
		p.state, _ = stringMember(ev.event, "state")
		return p, nil
	case kindStreamUpdated:
		p.status, _ = stringMember(ev.event, "status")
		p.reason, _ = stringMember(ev.event, "reason")
		return p, nil
	}
	p.policy = t.policy(p.name)
	if p.policy == PolicyIgnore {
		return p, nil
	}
	raw := ev.subID
	if raw == nil && t.Quirks.SubjectInEvent {
		raw = ev.event["subject"]
	}
	if raw == nil {
		hint := ""
		if _, ok := ev.event["subject"]; ok {
			hint = " (the event holds a subject: enable quirks.subject_in_event)"
		}
		return p, setErr(CodeInvalidRequest, "the SET has no sub_id%s", hint)
	}
	tgt, err := decodeSubject(raw, t.Quirks)
	if err != nil {
		return p, setErr(CodeInvalidRequest, "%.200s", err.Error())
	}
	notBefore, err := eventTime(ev, t.Quirks, now)
	if err != nil {
		return p, err
	}
	base := event.Event{
		Reason: info.reason, RevokedAt: now.Unix(), RevokedBy: p.name, Source: "ssf:" + t.Issuer,
	}
	switch {
	case tgt.token != nil:
		iss, ok := t.tokenIssuer(tgt.token.iss)
		if !ok {
			return p, setErr(CodeInvalidRequest, "the jwt_id subject's iss is not one of the transmitter's token_issuers")
		}
		e := base
		e.Type, e.JTI, e.Exp, e.Iss = event.TypeJTI, tgt.token.value, now.Add(lifetime).Unix(), iss
		p.events = []event.Event{e}
	case info.kind == kindRevokeSession && tgt.session != "" && tgt.session != allSessions:
		e := base
		e.Type, e.Claim, e.Value, e.NotBefore = event.TypeCutoff, "sid", tgt.session, notBefore
		issuers := t.TokenIssuers
		if tgt.user != nil {
			e.Sub = tgt.user.value
			if tgt.user.format == "iss_sub" {
				iss, ok := t.tokenIssuer(tgt.user.iss)
				if !ok {
					return p, setErr(CodeInvalidRequest, "the user subject's iss is not one of the transmitter's token_issuers")
				}
				issuers = []string{iss}
			}
		}
		p.events = perIssuer(e, issuers)
	case tgt.user != nil:
		e := base
		e.Type, e.NotBefore = event.TypeCutoff, notBefore
		issuers := t.TokenIssuers
		switch tgt.user.format {
		case "iss_sub":
			iss, ok := t.tokenIssuer(tgt.user.iss)
			if !ok {
				return p, setErr(CodeInvalidRequest, "the user subject's iss is not one of the transmitter's token_issuers")
			}
			issuers = []string{iss}
			e.Claim, e.Value, e.Sub = t.UserClaim, tgt.user.value, tgt.user.value
		case "opaque":
			e.Claim, e.Value, e.Sub = t.UserClaim, tgt.user.value, tgt.user.value
		case "email":
			if !t.EmailSubjects {
				return p, setErr(CodeInvalidRequest, "email subjects are not accepted from this transmitter (email_subjects is off)")
			}
			e.Claim, e.Value = t.EmailClaim, tgt.user.value
		}
		p.events = perIssuer(e, issuers)
	default:
		return p, setErr(CodeInvalidRequest, "the subject names a session only; %s revokes a user's tokens", p.name)
	}
	id := eventID(ev.iss, ev.jti)
	for i := range p.events {
		p.events[i].EventID = id
		if len(p.events) > 1 {
			p.events[i].EventID = id + ":" + strconv.Itoa(i)
		}
	}
	return p, nil
}

// perIssuer gives one copy of e for each token issuer.
func perIssuer(e event.Event, issuers []string) []event.Event {
	out := make([]event.Event, 0, len(issuers))
	for _, iss := range issuers {
		e.Iss = iss
		out = append(out, e)
	}
	return out
}

// eventID is the event_id, and so the Nats-Msg-Id, of the revocations of the SET (iss,
// jti): a SET delivered twice, to this replica or another, is stored once.
func eventID(iss, jti string) string {
	sum := sha256.Sum256([]byte(iss + "\x00" + jti))
	return "ssf:" + hex.EncodeToString(sum[:16])
}

// eventTime is the cutoff's not_before: the event's event_timestamp (in milliseconds
// under the quirk), or the SET's iat without one. One in the future past the clock skew
// is refused: it would revoke tokens not yet issued.
func eventTime(ev *secEvent, q Quirks, now time.Time) (int64, error) {
	raw, ok := ev.event["event_timestamp"]
	if !ok {
		return ev.iat, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, setErr(CodeInvalidRequest, "event_timestamp is not a number")
	}
	ts, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		if ferr != nil {
			return 0, setErr(CodeInvalidRequest, "event_timestamp is not a number")
		}
		ts = int64(f)
	}
	if q.MillisecondTimestamps {
		ts /= 1000
	}
	if ts <= 0 {
		return 0, setErr(CodeInvalidRequest, "event_timestamp must be positive")
	}
	if time.Unix(ts, 0).After(now.Add(clockSkew)) {
		hint := ""
		if !q.MillisecondTimestamps && ts > 1e11 {
			hint = " (milliseconds? enable quirks.millisecond_timestamps)"
		}
		return 0, setErr(CodeInvalidRequest, "event_timestamp is in the future%s", hint)
	}
	return ts, nil
}

// validate checks the planned events as the publisher will, so that a SET that cannot
// form a valid event publishes nothing.
func (p *plan) validate(check func(*event.Event) error) error {
	for i := range p.events {
		if err := check(&p.events[i]); err != nil {
			var evErr *event.Error
			if errors.As(err, &evErr) {
				return setErr(CodeInvalidRequest, "the SET cannot form a revocation: %.120s", evErr.Detail)
			}
			return fmt.Errorf("ssf: %w", err)
		}
	}
	return nil
}

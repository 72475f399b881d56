package ssf_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// The three real shapes the issue names, each through the HTTP endpoint into the stream.
func TestPushRealTransmitterShapes(t *testing.T) {
	kc := &spec{tr: ssftest.New(t, audience)}
	okta := &spec{tr: ssftest.New(t, audience), extra: "    user_claim: uid\n    quirks: {subject_in_event: true, millisecond_timestamps: true}\n"}
	google := &spec{tr: ssftest.New(t, audience, ssftest.WithRSA()), extra: "    legacy_typ: [\"\"]\n    quirks: {subject_in_event: true, subject_type: true}\n"}
	e := newEnv(t, kc, okta, google)
	at := time.Now().Add(-time.Minute).Truncate(time.Second)

	set := kc.tr.Sign(kc.tr.KeycloakSessionRevoked("user-1", "sess-9", at), nil)
	if code, errc := e.push(kc, set); code != http.StatusAccepted {
		t.Fatalf("keycloak session: %d %s", code, errc)
	}
	set = kc.tr.Sign(kc.tr.KeycloakSessionRevoked("user-2", "ALL", at), nil)
	if code, errc := e.push(kc, set); code != http.StatusAccepted {
		t.Fatalf("keycloak ALL: %d %s", code, errc)
	}
	oktaAt := at.Add(123 * time.Millisecond)
	set = okta.tr.Sign(okta.tr.OktaSessionRevoked("00u1abcd", oktaAt), nil)
	if code, errc := e.push(okta, set); code != http.StatusAccepted {
		t.Fatalf("okta: %d %s", code, errc)
	}
	set = google.tr.Sign(google.tr.GoogleRISC(ssftest.SessionsRevoked, "1234567890"), map[string]any{"typ": nil})
	if code, errc := e.push(google, set); code != http.StatusAccepted {
		t.Fatalf("google: %d %s", code, errc)
	}

	evs := e.events()
	if len(evs) != 4 {
		t.Fatalf("stream holds %d events: %+v", len(evs), evs)
	}
	want := []event.Event{
		{Type: "cutoff", Claim: "sid", Value: "sess-9", NotBefore: at.Unix(), Iss: kc.tr.Issuer, Sub: "user-1", Reason: "session_end", Source: "ssf:" + kc.tr.Issuer},
		{Type: "cutoff", Claim: "sub", Value: "user-2", NotBefore: at.Unix(), Iss: kc.tr.Issuer, Reason: "session_end", Source: "ssf:" + kc.tr.Issuer},
		{Type: "cutoff", Claim: "uid", Value: "00u1abcd", NotBefore: oktaAt.Unix(), Iss: okta.tr.Issuer, Reason: "session_end", Source: "ssf:" + okta.tr.Issuer},
		{Type: "cutoff", Claim: "sub", Value: "1234567890", Iss: google.tr.Issuer, Reason: "session_end", Source: "ssf:" + google.tr.Issuer},
	}
	for i, w := range want {
		g := evs[i]
		if g.Type != w.Type || g.Claim != w.Claim || g.Value != w.Value || g.Iss != w.Iss || g.Reason != w.Reason || g.Source != w.Source || (w.NotBefore != 0 && g.NotBefore != w.NotBefore) || (w.Sub != "" && g.Sub != w.Sub) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
		if !strings.HasPrefix(g.EventID, "ssf:") {
			t.Errorf("event %d: event_id %q not derived from (iss, jti)", i, g.EventID)
		}
	}
	if got := e.metric("revoked_ssf_sets_received_total", map[string]string{"transmitter": kc.tr.Issuer, "event_type": "session-revoked", "result": "published"}); got != 2 {
		t.Errorf("published SETs metric %v", got)
	}
}

// The quirks are switches: without them the same SETs are refused, saying which switch.
func TestQuirksAreOffByDefault(t *testing.T) {
	okta := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, okta)
	code, errc := e.push(okta, okta.tr.Sign(okta.tr.OktaSessionRevoked("00u1", time.Now()), nil))
	if code != http.StatusBadRequest || errc != "invalid_request" {
		t.Fatalf("subject in event without the quirk: %d %s", code, errc)
	}
	c := okta.tr.KeycloakSessionRevoked("u", "s", time.Now())
	c["events"].(map[string]any)[ssftest.SessionRevoked].(map[string]any)["event_timestamp"] = time.Now().UnixMilli()
	if code, errc := e.push(okta, okta.tr.Sign(c, nil)); code != http.StatusBadRequest || errc != "invalid_request" {
		t.Fatalf("millisecond timestamp without the quirk: %d %s", code, errc)
	}
	if !strings.Contains(e.logs.String(), "millisecond_timestamps") || !strings.Contains(e.logs.String(), "subject_in_event") {
		t.Errorf("the refusals do not name the switch:\n%s", e.logs.String())
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events published", n)
	}
}

// Every revocation event type of the contract's table, with a user subject, becomes a
// sub cutoff with its reason; session-revoked with a user only too.
func TestEveryEventTypeMapsToACutoff(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	types := map[string]string{
		ssftest.SessionRevoked:       "session_end",
		ssftest.CredentialChange:     "password_change",
		ssftest.AccountDisabled:      "admin_revoke",
		ssftest.AccountPurged:        "admin_revoke",
		ssftest.CredentialCompromise: "compromised",
		ssftest.SessionsRevoked:      "session_end",
		ssftest.TokensRevoked:        "other",
	}
	for typ := range types {
		c := tx.tr.Claims(typ, map[string]any{"event_timestamp": time.Now().Unix() - 5, "change_type": "update", "credential_type": "password"})
		c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u-"+typ[strings.LastIndex(typ, "/")+1:])
		if code, errc := e.push(tx, tx.tr.Sign(c, nil)); code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", typ, code, errc)
		}
	}
	evs := e.events()
	if len(evs) != len(types) {
		t.Fatalf("%d events for %d types", len(evs), len(types))
	}
	for _, ev := range evs {
		typ := ""
		for u := range types {
			if strings.HasSuffix(u, "/"+strings.TrimPrefix(ev.Value, "u-")) {
				typ = u
			}
		}
		if ev.Type != "cutoff" || ev.Claim != "sub" || ev.Reason != types[typ] || ev.Iss != tx.tr.Issuer || ev.NotBefore == 0 {
			t.Errorf("%s: %+v", typ, ev)
		}
	}
}

// Subject formats: iss_sub, opaque and email (one event per token issuer, email only
// when enabled), complex user, aliases, jwt_id (a jti entry, exp now + lifetime).
func TestSubjectFormats(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	tx.extra = "    token_issuers: [https://a.example, https://b.example]\n    email_subjects: true\n"
	noEmail := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx, noEmail)
	cases := map[string]struct {
		subject any
		typ     string
		code    int
		want    []event.Event // Type, Claim, Value, Iss compared
	}{
		"iss_sub":       {ssftest.IssSub("https://b.example", "u1"), ssftest.CredentialChange, 202, []event.Event{{Type: "cutoff", Claim: "sub", Value: "u1", Iss: "https://b.example"}}},
		"iss_sub other": {ssftest.IssSub("https://evil.example", "u1"), ssftest.CredentialChange, 400, nil},
		"opaque":        {ssftest.Opaque("u2"), ssftest.AccountDisabled, 202, []event.Event{{Type: "cutoff", Claim: "sub", Value: "u2", Iss: "https://a.example"}, {Type: "cutoff", Claim: "sub", Value: "u2", Iss: "https://b.example"}}},
		"email":         {map[string]any{"format": "email", "email": "a@b.example"}, ssftest.CredentialCompromise, 202, []event.Event{{Type: "cutoff", Claim: "email", Value: "a@b.example", Iss: "https://a.example"}, {Type: "cutoff", Claim: "email", Value: "a@b.example", Iss: "https://b.example"}}},
		"complex user":  {map[string]any{"format": "complex", "user": ssftest.IssSub("https://a.example", "u3"), "tenant": ssftest.Opaque("t1")}, ssftest.SessionRevoked, 202, []event.Event{{Type: "cutoff", Claim: "sub", Value: "u3", Iss: "https://a.example"}}},
		"complex session, opaque user": {map[string]any{"format": "complex", "user": ssftest.Opaque("u4"), "session": ssftest.Opaque("s4")}, ssftest.SessionRevoked, 202,
			[]event.Event{{Type: "cutoff", Claim: "sid", Value: "s4", Iss: "https://a.example"}, {Type: "cutoff", Claim: "sid", Value: "s4", Iss: "https://b.example"}}},
		"complex session sid": {map[string]any{"format": "complex", "user": ssftest.IssSub("https://b.example", "u5"), "session": map[string]any{"sid": "s5"}}, ssftest.SessionRevoked, 202,
			[]event.Event{{Type: "cutoff", Claim: "sid", Value: "s5", Iss: "https://b.example"}}},
		"session only, credential-change": {map[string]any{"format": "complex", "session": ssftest.Opaque("s5")}, ssftest.CredentialChange, 400, nil},
		"aliases": {map[string]any{"format": "aliases", "identifiers": []any{map[string]any{"format": "phone_number", "phone_number": "+1"}, ssftest.IssSub("https://a.example", "u6")}}, ssftest.CredentialChange, 202,
			[]event.Event{{Type: "cutoff", Claim: "sub", Value: "u6", Iss: "https://a.example"}}},
		"jwt_id":       {map[string]any{"format": "jwt_id", "iss": "https://b.example", "jti": "tok-7"}, ssftest.TokensRevoked, 202, []event.Event{{Type: "jti", JTI: "tok-7", Iss: "https://b.example"}}},
		"jwt_id other": {map[string]any{"format": "jwt_id", "iss": "https://evil.example", "jti": "tok-8"}, ssftest.TokensRevoked, 400, nil},
		"phone":        {map[string]any{"format": "phone_number", "phone_number": "+1"}, ssftest.CredentialChange, 400, nil},
		"no subject":   {nil, ssftest.CredentialChange, 400, nil},
		"not object":   {"u1", ssftest.CredentialChange, 400, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := len(e.events())
			c := tx.tr.Claims(tc.typ, nil)
			if tc.subject != nil {
				c["sub_id"] = tc.subject
			}
			start := time.Now()
			code, errc := e.push(tx, tx.tr.Sign(c, nil))
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, errc, tc.code)
			}
			got := e.events()[before:]
			if len(got) != len(tc.want) {
				t.Fatalf("published %+v, want %+v", got, tc.want)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Type != w.Type || g.Claim != w.Claim || g.Value != w.Value || g.Iss != w.Iss || g.JTI != w.JTI {
					t.Errorf("event %d: %+v, want %+v", i, g, w)
				}
				if g.Type == "jti" && (g.Exp < start.Add(24*time.Hour).Unix() || g.Exp > time.Now().Add(24*time.Hour).Unix()) {
					t.Errorf("jti entry exp %d is not now + 24h", g.Exp)
				}
			}
		})
	}
	t.Run("email off", func(t *testing.T) {
		c := noEmail.tr.Claims(ssftest.CredentialChange, nil)
		c["sub_id"] = map[string]any{"format": "email", "email": "a@b.example"}
		if code, errc := e.push(noEmail, noEmail.tr.Sign(c, nil)); code != 400 || errc != "invalid_request" {
			t.Fatalf("%d %s", code, errc)
		}
	})
}

// Verification and stream-updated publish nothing and are recorded; an unknown event
// type is acknowledged, counted, and publishes nothing.
func TestRecordedAndUnknownEvents(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	c := tx.tr.Claims(ssftest.Verification, map[string]any{"state": "abc"})
	c["sub_id"] = ssftest.Opaque("stream-1")
	if code, errc := e.push(tx, tx.tr.Sign(c, nil)); code != 202 {
		t.Fatalf("verification: %d %s", code, errc)
	}
	if v := e.metric("revoked_ssf_stream_verified_timestamp_seconds", map[string]string{"transmitter": tx.tr.Issuer}); v < float64(time.Now().Unix()-5) {
		t.Errorf("verified timestamp %v", v)
	}
	c = tx.tr.Claims(ssftest.StreamUpdated, map[string]any{"status": "paused", "reason": "maintenance\nforged"})
	c["sub_id"] = ssftest.Opaque("stream-1")
	if code, errc := e.push(tx, tx.tr.Sign(c, nil)); code != 202 {
		t.Fatalf("stream-updated: %d %s", code, errc)
	}
	if v := e.metric("revoked_ssf_stream_status", map[string]string{"transmitter": tx.tr.Issuer, "status": "paused"}); v != 1 {
		t.Errorf("paused status metric %v", v)
	}
	if !strings.Contains(e.logs.String(), "no longer arrive") || strings.Contains(e.logs.String(), "\nforged") {
		t.Errorf("paused stream not logged as a warning, or its reason not cleaned:\n%s", e.logs.String())
	}
	c = tx.tr.Claims("https://example.com/event-type/something-new", map[string]any{})
	c["sub_id"] = ssftest.Opaque("u")
	if code, errc := e.push(tx, tx.tr.Sign(c, nil)); code != 202 {
		t.Fatalf("unknown type: %d %s", code, errc)
	}
	if v := e.metric("revoked_ssf_sets_received_total", map[string]string{"event_type": "unknown", "result": "unknown_event"}); v != 1 {
		t.Errorf("unknown event metric %v", v)
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events published", n)
	}
}

// Per-event-type policies: dry-run counts and logs, ignore only counts; neither
// publishes.
func TestPoliciesAndDryRun(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience), extra: "    events:\n      session-revoked: dry-run\n      " + ssftest.CredentialChange + ": ignore\n"}
	all := &spec{tr: ssftest.New(t, audience), extra: "    dry_run: true\n"}
	e := newEnv(t, tx, all)
	for _, s := range []*spec{tx, all} {
		for _, typ := range []string{ssftest.SessionRevoked, ssftest.CredentialChange} {
			c := s.tr.Claims(typ, nil)
			c["sub_id"] = ssftest.IssSub(s.tr.Issuer, "user-9")
			if code, errc := e.push(s, s.tr.Sign(c, nil)); code != 202 {
				t.Fatalf("%s: %d %s", typ, code, errc)
			}
		}
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events published in dry-run/ignore", n)
	}
	if v := e.metric("revoked_ssf_sets_received_total", map[string]string{"transmitter": tx.tr.Issuer, "event_type": "credential-change", "result": "ignored"}); v != 1 {
		t.Errorf("ignored %v", v)
	}
	if v := e.metric("revoked_ssf_events_published_total", map[string]string{"transmitter": all.tr.Issuer, "result": "dry_run"}); v != 2 {
		t.Errorf("dry-run events %v", v)
	}
	if strings.Count(e.logs.String(), "would revoke") != 3 || strings.Contains(e.logs.String(), "user-9") {
		t.Errorf("dry run not logged three times, or logged the user id in clear:\n%s", e.logs.String())
	}
}

// A legacy typ is accepted only from a transmitter configured for it.
func TestLegacyTyp(t *testing.T) {
	legacy := &spec{tr: ssftest.New(t, audience), extra: "    legacy_typ: [JWT]\n"}
	strict := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, legacy, strict)
	for _, tc := range []struct {
		s    *spec
		typ  any
		code int
	}{{legacy, "JWT", 202}, {legacy, "jwt", 202}, {legacy, nil, 400}, {strict, "JWT", 400}, {strict, "application/secevent+jwt", 202}} {
		c := tc.s.tr.Claims(ssftest.CredentialChange, nil)
		c["sub_id"] = ssftest.IssSub(tc.s.tr.Issuer, "u1")
		if code, errc := e.push(tc.s, tc.s.tr.Sign(c, map[string]any{"typ": tc.typ})); code != tc.code {
			t.Errorf("%s typ %v: %d %s, want %d", tc.s.tr.Issuer, tc.typ, code, errc, tc.code)
		}
	}
}

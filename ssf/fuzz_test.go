package ssf

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzParseClaims: any payload gives a secEvent or a *SETError, never a panic, and an
// accepted one has exactly what parseClaims promises.
func FuzzParseClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"https://i","aud":"a","iat":1700000000,"jti":"j","events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"event_timestamp":1}},"sub_id":{"format":"opaque","id":"x"}}`,
		`{"iss":"https://i","iat":1e3,"jti":"j","events":{}}`,
		`{"iss":"https://i","iat":1,"jti":"j","exp":2,"events":{"a":{}}}`,
		`{"iss":"","iat":-1,"jti":7,"events":{"a":1,"b":2}}`,
		`[]`, `null`, `{"events":{"a":null},"iss":"x","jti":"y","iat":9}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := parseClaims(payload)
		if err != nil {
			if _, ok := err.(*SETError); !ok {
				t.Fatalf("error %T is not a *SETError", err)
			}
			return
		}
		if ev.iss == "" || ev.jti == "" || ev.iat <= 0 || ev.eventType == "" || ev.event == nil {
			t.Fatalf("accepted an incomplete SET: %+v", ev)
		}
		tr := &Transmitter{Issuer: ev.iss, TokenIssuers: []string{ev.iss}, UserClaim: "sub", EmailClaim: "email", EmailSubjects: true,
			Quirks: Quirks{SubjectInEvent: true, SubjectType: true}}
		p, err := mapSET(tr, ev, time.Hour, time.Unix(ev.iat, 0))
		if err == nil {
			for _, e := range p.events {
				if e.Source != "ssf:"+ev.iss || e.EventID == "" {
					t.Fatalf("event without source or id: %+v", e)
				}
			}
		}
	})
}

// FuzzDecodeSubject: any subject decodes to a target naming something, or errors.
func FuzzDecodeSubject(f *testing.F) {
	for _, s := range []string{
		`{"format":"iss_sub","iss":"https://i","sub":"u"}`,
		`{"format":"complex","user":{"format":"iss_sub","iss":"https://i","sub":"u"},"session":{"format":"opaque","id":"ALL"}}`,
		`{"user":{"format":"email","email":"a@b"},"tenant":{"format":"opaque","id":"t"}}`,
		`{"format":"aliases","identifiers":[{"format":"phone_number","phone_number":"+1"},{"format":"jwt_id","iss":"i","jti":"j"}]}`,
		`{"subject_type":"iss-sub","iss":"https://accounts.google.com/","sub":"1"}`,
		`{"format":"complex","user":{"format":"complex"}}`, `{"format":7}`, `[]`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, legacy bool) {
		tg, err := decodeSubject(json.RawMessage(raw), Quirks{SubjectType: legacy})
		if err != nil {
			return
		}
		if tg.user == nil && tg.session == "" && tg.token == nil {
			t.Fatalf("decoded %s to a target naming nothing", raw)
		}
		for _, s := range []*subject{tg.user, tg.token} {
			if s != nil && (s.value == "" || s.format == "") {
				t.Fatalf("decoded %s to an empty subject %+v", raw, s)
			}
		}
	})
}

// FuzzKidOf: any SET gives a kid or "", never a panic; a kid is the header's, exactly.
func FuzzKidOf(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.e30.sig", // {"alg":"ES256","kid":"k1"}
		"eyJhbGciOiJub25lIn0.e30.",                    // no kid
		"bm90IGpzb24.e30.x", "", ".", "!!!.e30.x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		kid := kidOf(raw)
		if kid == "" {
			return
		}
		head, _, _ := strings.Cut(raw, ".")
		b, err := base64.RawURLEncoding.DecodeString(head)
		var h map[string]any
		if err != nil || json.Unmarshal(b, &h) != nil || h["kid"] != kid {
			t.Fatalf("kid %q from a header that does not name it: %q", kid, raw)
		}
	})
}

// FuzzRootEquivalent: only an http(s) origin and the same with "/" are one issuer.
func FuzzRootEquivalent(f *testing.F) {
	for _, s := range [][2]string{
		{"https://accounts.google.com", "https://accounts.google.com/"},
		{"https://idp/realms/a", "https://idp/realms/a/"},
		{"https://a", "https://a"}, {"urn:x", "urn:x/"}, {"https://a?q", "https://a?q/"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !rootEquivalent(a, b) {
			return
		}
		if rootEquivalent(b, a) != true || (a+"/" != b && b+"/" != a) {
			t.Fatalf("%q and %q taken as one", a, b)
		}
		short := b
		if len(a) < len(b) {
			short = a
		}
		if u, err := url.Parse(short + "/"); err != nil || u.Path != "/" {
			t.Fatalf("%q and %q: not an origin and its root", a, b)
		}
	})
}

package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/publish"
)

// FuzzParseEvents feeds arbitrary bodies to the /v1/revocations parser: it never
// panics, and whatever it accepts is a list of valid events the publisher can send.
func FuzzParseEvents(f *testing.F) {
	for _, seed := range []string{
		`{"type":"jti","jti":"7f3c","exp":1767225600}`,
		`[{"type":"cutoff","claim":"sub","value":"u","not_before":1},{"type":"jti","jti":"a","exp":2}]`,
		`[]`, `{}`, `[{}]`, `[1,"x",null]`, `null`, ` `, `{"type":"jti"`, `[{"type":"jti","jti":"a","exp":1}] x`,
		"{\"type\":\"jti\",\"jti\":\"\xff\",\"exp\":1}",
		`{"type":"jti","jti":"a","exp":1,"event_id":"a\nb"}`,
		`{"type":"cutoff","claim":"sid","value":"` + strings.Repeat("v", 300) + `","not_before":1}`,
	} {
		f.Add([]byte(seed))
	}
	p := publish.New(nil, publish.Config{})
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, bad, err := parseEvents(body, p)
		if err != nil {
			if len(evs) > 0 || len(bad) > 0 {
				t.Fatal("events with an error")
			}
			return
		}
		if len(evs)+len(bad) == 0 {
			t.Fatal("accepted a body with no event")
		}
		for _, b := range bad {
			if b.Reason == "" || b.Error == "" {
				t.Fatalf("rejection without a reason: %+v", b)
			}
		}
		for _, ev := range evs {
			if _, err := p.Message(&ev); err != nil {
				t.Fatalf("accepted %+v the publisher refuses: %v", ev, err)
			}
		}
	})
}

// FuzzLogoutToken feeds arbitrary logout_token strings, and tokens signed by a stranger,
// to the validator: it never panics and never accepts a token it cannot verify.
func FuzzLogoutToken(f *testing.F) {
	key := newSigner(f, "k1")
	stranger := newSigner(f, "k1")
	cfg := &Config{Leeway: 30 * time.Second, Issuers: []string{testIssuer}, LogoutMaxAge: time.Minute, LogoutAudiences: []string{testRP}}
	cfg.JWKSFile = writeJWKS(f, f.TempDir(), key)
	// Hydra's issuer: its tokens may lack exp, so the fuzzer reaches that path too.
	s := &Server{cfg: cfg, now: time.Now, logout: logoutPolicy{fallback: LogoutSID, noExp: []string{testIssuer}}}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	keys, err := newKeysForTest(ctx, cfg.JWKSFile)
	if err != nil {
		f.Fatal(err)
	}
	s.keys = keys
	f.Add(key.sign(f, logoutClaims("seed", nil), logoutTyp), false)
	f.Add(stranger.sign(f, logoutClaims("seed", nil), logoutTyp), true)
	f.Add(key.sign(f, logoutClaims("hydra", func(c jwt.MapClaims) { delete(c, "exp"); delete(c, "sub") }), logoutTyp), false)
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.", true)
	f.Add("a.b.c", true)
	f.Add("", true)
	f.Fuzz(func(t *testing.T, raw string, forged bool) {
		if forged {
			// A token with raw's claims, signed by a key the JWKS does not hold.
			raw = stranger.sign(t, jwt.MapClaims{"iss": testIssuer, "aud": testRP, "jti": raw, "sid": raw, "iat": time.Now().Unix(),
				"exp": time.Now().Add(time.Minute).Unix(), "events": map[string]any{BackchannelLogoutEvent: map[string]any{}}}, logoutTyp)
		}
		lt, err := s.validateLogoutToken(raw)
		if err != nil {
			return
		}
		if forged {
			t.Fatal("accepted a token signed by a stranger")
		}
		if lt.jti == "" || lt.iss == "" || (lt.sid == "" && lt.sub == "") {
			t.Fatalf("accepted an incomplete token %+v", lt)
		}
	})
}

// FuzzLogoutCutoffFlag feeds arbitrary --logout-cutoff entries to their parser: it
// never panics, and an entry it accepts gives a known mode to its issuer or to all.
func FuzzLogoutCutoffFlag(f *testing.F) {
	for _, seed := range []string{"sid", "client", "user", "https://idp.example.com=client", "=sid", "https://a=b=user", "x=", "", "SID", "https://idp.example.com=everything"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		c := Config{LogoutCutoffs: []string{entry}}
		p, err := c.logoutPolicy()
		if err != nil {
			return
		}
		known := func(m LogoutMode) bool { return m == LogoutSID || m == LogoutClient || m == LogoutUser }
		if !known(p.fallback) || len(p.byIssuer) > 1 {
			t.Fatalf("%q: policy %+v", entry, p)
		}
		for iss, m := range p.byIssuer {
			if iss == "" || !known(m) || p.mode(iss) != m {
				t.Fatalf("%q: policy %+v", entry, p)
			}
		}
	})
}

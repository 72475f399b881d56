package ingest

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func logoutClaims(jti string, mod func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer, "aud": []string{testRP, "other-rp"}, "iat": time.Now().Unix(),
		"exp": time.Now().Add(2 * time.Minute).Unix(), "jti": jti,
		"sub": "user-42", "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
	if mod != nil {
		mod(c)
	}
	return c
}

var logoutTyp = map[string]any{"typ": "logout+jwt"}

func TestBackchannelLogout(t *testing.T) {
	f := newFixture(t, nil)
	before := time.Now().Unix()
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {f.key.sign(t, logoutClaims("lt-1", nil), logoutTyp)}}, nil)
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r = f.postForm("/backchannel-logout", url.Values{"logout_token": {f.key.sign(t, logoutClaims("lt-2", func(c jwt.MapClaims) {
		delete(c, "sid")
		c["aud"] = testRP
	}), map[string]any{"typ": "JWT"})}}, nil)
	if r.code != http.StatusOK {
		t.Fatalf("sub only: %d %s", r.code, r.body)
	}
	evs := f.events()
	if len(evs) != 2 {
		t.Fatalf("stream %+v", evs)
	}
	sid, sub := evs[0], evs[1]
	if sid.Type != "cutoff" || sid.Claim != "sid" || sid.Value != "08a5019c-17e1-4977-8f42-65a12843ea02" || sid.Iss != testIssuer ||
		sid.Sub != "user-42" || sid.Reason != "logout" || sid.NotBefore <= before || sid.NotBefore > time.Now().Unix()+1 ||
		!strings.HasPrefix(sid.EventID, "bcl:") {
		t.Errorf("sid cutoff %+v", sid)
	}
	if sub.Claim != "sub" || sub.Value != "user-42" {
		t.Errorf("sub cutoff %+v", sub)
	}
}

func TestBackchannelLogoutRefusesBadTokens(t *testing.T) {
	f := newFixture(t, nil)
	stranger := newSigner(t, "k1")
	sign := func(jti string, mod func(jwt.MapClaims)) string {
		return f.key.sign(t, logoutClaims(jti, mod), logoutTyp)
	}
	noneTok := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, logoutClaims("none", nil))
		s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}
	hsTok := func() string {
		// HS256 with the public key's bytes as secret: the classic algorithm confusion.
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, logoutClaims("hs", nil)).SignedString([]byte(f.key.jwk()["x"]))
		return s
	}
	tests := map[string]struct {
		token    string
		contains string
	}{
		"missing":             {"", "logout_token parameter is required"},
		"not a JWT":           {"hello", "not a JWT"},
		"unsigned (alg none)": {noneTok(), "logout_token"},
		"HS256 confusion":     {hsTok(), "logout_token"},
		"wrongly signed":      {stranger.sign(t, logoutClaims("forged", nil), logoutTyp), "signature does not verify"},
		"nonce":               {sign("n", func(c jwt.MapClaims) { c["nonce"] = "abc" }), "must not contain a nonce"},
		"no events":           {sign("e", func(c jwt.MapClaims) { delete(c, "events") }), "no events"},
		"wrong event": {sign("e2", func(c jwt.MapClaims) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}
		}), "backchannel-logout"},
		"event not object": {sign("e3", func(c jwt.MapClaims) { c["events"] = map[string]any{BackchannelLogoutEvent: "yes"} }), "JSON object"},
		"no sub nor sid":   {sign("s", func(c jwt.MapClaims) { delete(c, "sub"); delete(c, "sid") }), "neither sub nor sid"},
		"empty sid":        {sign("s2", func(c jwt.MapClaims) { c["sid"] = "" }), "sid must be"},
		"wrong aud":        {sign("a", func(c jwt.MapClaims) { c["aud"] = "someone-else" }), "aud"},
		"no aud":           {sign("a2", func(c jwt.MapClaims) { delete(c, "aud") }), "aud"},
		"wrong iss":        {sign("i", func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" }), "iss"},
		"no iat":           {sign("t", func(c jwt.MapClaims) { delete(c, "iat") }), "iat"},
		"iat too old":      {sign("t2", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(-time.Hour).Unix() }), "ago"},
		"iat in future":    {sign("t3", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }), "future"},
		"expired":          {sign("x", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }), "expired"},
		"no exp":           {sign("x2", func(c jwt.MapClaims) { delete(c, "exp") }), "exp"},
		"no jti":           {sign("", func(c jwt.MapClaims) { delete(c, "jti") }), "no jti"},
		"access token typ": {f.key.sign(t, logoutClaims("typ", nil), map[string]any{"typ": "at+jwt"}), "typ"},
		"sid too long":     {sign("l", func(c jwt.MapClaims) { c["sid"] = strings.Repeat("s", 300) }), "cannot form a revocation"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			form := url.Values{}
			if tc.token != "" {
				form.Set("logout_token", tc.token)
			}
			r := f.postForm("/backchannel-logout", form, nil)
			if r.code != http.StatusBadRequest || r.json(t)["error"] != "invalid_request" {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if !strings.Contains(r.json(t)["error_description"].(string), tc.contains) {
				t.Errorf("description %q lacks %q", r.json(t)["error_description"], tc.contains)
			}
		})
	}
	if n := len(f.events()); n != 0 {
		t.Fatalf("%d events published from bad logout tokens", n)
	}
	big := strings.Repeat("a", int(f.cfg.MaxBody))
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {big}}, nil); r.code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", r.code, r.body)
	}
}

func TestBackchannelLogoutRefusesReplay(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.key.sign(t, logoutClaims("replayed", nil), logoutTyp)
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "replayed") {
		t.Fatalf("replay on the same replica: %d %s", r.code, r.body)
	}

	// A second replica, on the same stream, refuses it too: the stream's duplicate window.
	cfg2 := *f.cfg
	cfg2.Listen, cfg2.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv2, err := Start(context.Background(), &cfg2, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close(context.Background())
	waitFor(t, 10*time.Second, func() bool { return srv2.Ready(context.Background()) == nil })
	res, err := http.PostForm("http://"+srv2.Addr()+"/backchannel-logout", url.Values{"logout_token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(res)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "replayed") {
		t.Fatalf("replay on another replica: %d %s", res.StatusCode, body)
	}
	if n := len(f.events()); n != 1 {
		t.Fatalf("%d events", n)
	}
}

func TestBackchannelLogoutOutageAnswers503AndAllowsRetry(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.key.sign(t, logoutClaims("retry-me", nil), logoutTyp)
	f.nats.Stop()
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	if r.code != http.StatusServiceUnavailable {
		t.Fatalf("%d %s", r.code, r.body)
	}
	f.nats.Restart()
	waitFor(t, 15*time.Second, func() bool { return f.srv.Ready(context.Background()) == nil })
	// The IdP retries the same token: not a replay, since it was never acknowledged,
	// even if the earlier attempt reached the stream after all.
	r = f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	if r.code != http.StatusOK {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	if n := len(f.events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

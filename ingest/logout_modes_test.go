package ingest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Three IdPs behind one ingest: one whose access tokens carry sid (the default mode),
// one whose do not (Hydra, Auth0: client), one configured to sign the user out of
// every client (user).
const (
	sidIssuer    = testIssuer
	clientIssuer = "https://hydra.example.com"
	userIssuer   = "https://auth0.example.com"
)

func logoutModesFixture(t *testing.T) *fixture {
	return newFixture(t, func(c *Config) {
		c.Issuers = []string{sidIssuer, clientIssuer, userIssuer}
		c.LogoutAudiences = []string{testRP, "rp-client-2"}
		c.LogoutCutoffs = []string{clientIssuer + "=client", userIssuer + "=user"}
	})
}

func TestBackchannelLogoutModes(t *testing.T) {
	f := logoutModesFixture(t)
	const sid = "08a5019c-17e1-4977-8f42-65a12843ea02"
	type cutoff struct{ claim, value, clientID string }
	tests := []struct {
		name   string
		mod    func(jwt.MapClaims)
		want   []cutoff
		reason string // the rejection reason when refused
	}{
		{"sid in access tokens: sid cutoff", nil, []cutoff{{"sid", sid, ""}}, ""},
		{"sid in access tokens, sub only: the user's tokens at this RP (BCL 1.0 2.4)", func(c jwt.MapClaims) { delete(c, "sid") },
			[]cutoff{{"sub", "user-42", testRP}}, ""},
		{"no sid in access tokens: the user's tokens at the logging-out client", func(c jwt.MapClaims) { c["iss"] = clientIssuer },
			[]cutoff{{"sub", "user-42", testRP}}, ""},
		{"two of our clients in aud: one cutoff each", func(c jwt.MapClaims) {
			c["iss"] = clientIssuer
			c["aud"] = []string{"rp-client-2", "someone-else", testRP}
		}, []cutoff{{"sub", "user-42", testRP}, {"sub", "user-42", "rp-client-2"}}, ""}, // in client id order
		{"user mode: every client", func(c jwt.MapClaims) { c["iss"] = userIssuer }, []cutoff{{"sub", "user-42", ""}}, ""},
		{"sid only, no sid in access tokens: cannot name the user", func(c jwt.MapClaims) { c["iss"] = clientIssuer; delete(c, "sub") }, nil, "no_sub"},
		{"sid only, user mode", func(c jwt.MapClaims) { c["iss"] = userIssuer; delete(c, "sub") }, nil, "no_sub"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.events())
			rejectedLabels := map[string]string{"endpoint": "backchannel_logout", "reason": tc.reason}
			rejectedBefore := f.metric("revoked_ingest_events_rejected_total", rejectedLabels)
			claims := logoutClaims("modes-"+string(rune('a'+i)), tc.mod)
			r := f.postForm("/backchannel-logout", url.Values{"logout_token": {f.key.sign(t, claims, logoutTyp)}}, nil)
			evs := f.events()[before:]
			if tc.reason != "" {
				if r.code != http.StatusBadRequest || !strings.Contains(r.body, "cannot revoke") || len(evs) != 0 {
					t.Fatalf("%d %s, %d events", r.code, r.body, len(evs))
				}
				// The delta of this case: the counter also holds the earlier cases' rejections.
				if got := f.metric("revoked_ingest_events_rejected_total", rejectedLabels) - rejectedBefore; got != 1 {
					t.Errorf("rejection counted %v times under %s, want once", got, tc.reason)
				}
				return
			}
			if r.code != http.StatusOK || len(evs) != len(tc.want) {
				t.Fatalf("%d %s, events %+v", r.code, r.body, evs)
			}
			ids := map[string]bool{}
			for j, w := range tc.want {
				ev := evs[j]
				if ev.Type != "cutoff" || ev.Claim != w.claim || ev.Value != w.value || ev.ClientID != w.clientID ||
					ev.Iss != claims["iss"] || ev.Source != "backchannel-logout" || ev.Reason != "logout" {
					t.Errorf("event %d: %+v, want %+v", j, ev, w)
				}
				if ids[ev.EventID] {
					t.Errorf("event id %s twice", ev.EventID)
				}
				ids[ev.EventID] = true
			}
		})
	}
}

// The cutoff is the logout token's iat: a logout delivered late (the IdP retried it)
// must not revoke the tokens of the login that followed it.
func TestBackchannelLogoutCutoffFromIat(t *testing.T) {
	f := newFixture(t, nil)
	iat := time.Now().Add(-40 * time.Second).Unix()
	tok := f.key.sign(t, logoutClaims("late", func(c jwt.MapClaims) { c["iat"] = iat }), logoutTyp)
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if evs := f.events(); len(evs) != 1 || evs[0].NotBefore != iat+1 {
		t.Fatalf("not_before %d, want iat+1 = %d", evs[0].NotBefore, iat+1)
	}
}

// Ory Hydra's logout token: sid, no sub, no exp (BCL 1.0 requires exp). Accepted only
// from an issuer configured for it, and then only within the iat window.
func TestBackchannelLogoutHydraWithoutExp(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Issuers = []string{testIssuer, clientIssuer}
		c.LogoutNoExp = []string{clientIssuer}
		c.LogoutCutoffs = []string{clientIssuer + "=sid"} // the consent app copies sid into access tokens
	})
	hydra := func(jti, iss string, iat time.Time) string {
		return f.key.sign(t, jwt.MapClaims{
			"iss": iss, "aud": []string{testRP}, "iat": iat.Unix(), "jti": jti, "sid": "hydra-login-session",
			"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
		}, logoutTyp)
	}
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {hydra("h1", clientIssuer, time.Now())}}, nil); r.code != http.StatusOK {
		t.Fatalf("Hydra's token from its issuer: %d %s", r.code, r.body)
	}
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {hydra("h2", testIssuer, time.Now())}}, nil)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "no exp") {
		t.Fatalf("no exp from another issuer: %d %s", r.code, r.body)
	}
	r = f.postForm("/backchannel-logout", url.Values{"logout_token": {hydra("h3", clientIssuer, time.Now().Add(-5*time.Minute))}}, nil)
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, "ago") {
		t.Fatalf("old token without exp: %d %s", r.code, r.body)
	}
	evs := f.events()
	if len(evs) != 1 || evs[0].Claim != "sid" || evs[0].Value != "hydra-login-session" || evs[0].Iss != clientIssuer {
		t.Fatalf("stream %+v", evs)
	}
}

func TestLogoutPolicyFlags(t *testing.T) {
	tests := map[string]struct {
		cutoffs, noExp []string
		want           string // error text, "" for none
	}{
		"default":          {nil, nil, ""},
		"global and one":   {[]string{"client", clientIssuer + "=sid"}, []string{clientIssuer}, ""},
		"unknown mode":     {[]string{"everything"}, nil, "sid, client or user"},
		"two globals":      {[]string{"client", "user"}, nil, "more than one"},
		"issuer twice":     {[]string{clientIssuer + "=sid", clientIssuer + "=user"}, nil, "twice"},
		"empty issuer":     {[]string{"=sid"}, nil, "ISSUER=MODE"},
		"not an issuer":    {[]string{"https://x.example.com=sid"}, nil, "not an --issuer"},
		"no-exp stranger":  {nil, []string{"https://x.example.com"}, "not an --issuer"},
		"mode of an issue": {[]string{clientIssuer + "=bogus"}, nil, "sid, client or user"},
	}
	for name, tc := range tests {
		c := Config{LogoutCutoffs: tc.cutoffs, LogoutNoExp: tc.noExp}
		c.Issuers = []string{testIssuer, clientIssuer}
		p, err := c.logoutPolicy()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q (policy %+v)", name, err, tc.want, p)
		}
	}
	c := Config{LogoutCutoffs: []string{"client", clientIssuer + "=sid"}}
	p, _ := c.logoutPolicy()
	if p.mode(clientIssuer) != LogoutSID || p.mode(testIssuer) != LogoutClient {
		t.Errorf("modes %+v", p)
	}
}

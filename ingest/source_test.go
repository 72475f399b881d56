package ingest

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Every event the ingest API publishes says where it came from (CONTRACT section 2).
func TestSourceOnEveryPublish(t *testing.T) {
	f := newFixture(t, nil)
	if r := f.postJSON(`[{"type":"jti","jti":"s-api","exp":1767225600},{"type":"jti","jti":"s-own","exp":1767225600,"source":"hr-system"}]`, bearer); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	tok := f.key.sign(t, accessClaims("s-7009", time.Now().Add(time.Hour)), nil)
	if r := f.postForm("/oauth2/revoke", url.Values{"token": {tok}}, bearer); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	lt := f.key.sign(t, logoutClaims("s-bcl", func(c jwt.MapClaims) {}), logoutTyp)
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {lt}}, nil); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	want := []string{"api", "hr-system", "rfc7009", "backchannel-logout"}
	evs := f.events()
	if len(evs) != len(want) {
		t.Fatalf("stream %+v", evs)
	}
	for i, ev := range evs {
		if ev.Source != want[i] {
			t.Errorf("event %d (%s%s): source %q, want %q", i, ev.JTI, ev.Claim, ev.Source, want[i])
		}
	}
}

// An --oauth-client revokes only its own tokens; a privileged one any. A valid token
// of another client is refused (RFC 7009 section 2.1), published nothing and counted.
func TestOAuthRevokeOwnTokensOnly(t *testing.T) {
	const secret = "client secret 0123456789abcdef"
	f := newFixture(t, func(c *Config) {
		dir := t.TempDir()
		for _, id := range []string{"web", "other", "support-console"} {
			c.OAuthClients = append(c.OAuthClients, id+":"+writeSecret(t, dir, id, secret))
		}
		c.OAuthPrivileged = []string{"support-console"}
	})
	exp := time.Now().Add(time.Hour)
	token := func(jti string, mod func(jwt.MapClaims)) string {
		c := accessClaims(jti, exp) // client_id web
		if mod != nil {
			mod(c)
		}
		return f.key.sign(t, c, nil)
	}
	basic := func(id string) map[string]string {
		return map[string]string{"Authorization": "Basic " + stdB64(id+":"+secret)}
	}
	tests := []struct {
		name      string
		client    string
		token     string
		code      int
		published bool
	}{
		{"own token", "web", token("o-1", nil), 200, true},
		{"own token named by azp", "web", token("o-2", func(c jwt.MapClaims) { delete(c, "client_id"); c["azp"] = "web" }), 200, true},
		{"another client's token", "other", token("o-3", nil), 400, false},
		{"azp of another client", "other", token("o-4", func(c jwt.MapClaims) { delete(c, "client_id"); c["azp"] = "web" }), 400, false},
		{"a token naming no client", "other", token("o-5", func(c jwt.MapClaims) { delete(c, "client_id") }), 400, false},
		{"privileged client", "support-console", token("o-6", nil), 200, true},
		{"invalid token of nobody: 200, as RFC 7009 2.2 says", "other", "not-a-jwt", 200, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.events())
			r := f.postForm("/oauth2/revoke", url.Values{"token": {tc.token}}, basic(tc.client))
			if r.code != tc.code {
				t.Fatalf("%d %s", r.code, r.body)
			}
			if tc.code == 400 && r.json(t)["error"] != "unauthorized_client" {
				t.Errorf("error %s", r.body)
			}
			if got := len(f.events()) - before; got != map[bool]int{true: 1, false: 0}[tc.published] {
				t.Fatalf("%d events published", got)
			}
		})
	}
	if got := f.metric("revoked_ingest_events_rejected_total", map[string]string{"endpoint": "oauth2_revoke", "reason": "not_token_owner"}); got != 3 {
		t.Errorf("rejected{not_token_owner} = %v, want 3", got)
	}
}

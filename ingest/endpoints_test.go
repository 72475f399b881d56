package ingest

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// Which endpoints a configuration serves, and that it refuses one that would serve
// nothing or keys no caller could use: the API credentials are required only by the
// endpoints that need them.
func TestEndpointsConfiguration(t *testing.T) {
	ssfOnly := func(c *Config) {
		c.BearerTokenFile, c.JWKSFile, c.LogoutAudiences, c.SSFTransmitters = "", "", nil, "ssf.yaml"
	}
	tests := map[string]struct {
		mod  func(*Config)
		want string // the error, "" for a valid configuration
		// served: revocations, oauth2/revoke, backchannel-logout, ssf
		served [4]bool
	}{
		"everything":               {func(c *Config) { c.SSFTransmitters = "ssf.yaml" }, "", [4]bool{true, true, true, true}},
		"ssf only":                 {ssfOnly, "", [4]bool{false, false, false, true}},
		"logout only":              {func(c *Config) { c.BearerTokenFile = "" }, "", [4]bool{false, false, true, false}},
		"oauth clients only":       {func(c *Config) { c.BearerTokenFile, c.LogoutAudiences, c.OAuthClients = "", nil, []string{"app:f"} }, "", [4]bool{false, true, false, false}},
		"logout and oauth":         {func(c *Config) { c.BearerTokenFile, c.OAuthClients = "", []string{"app:f"} }, "", [4]bool{false, true, true, false}},
		"client CA":                {func(c *Config) { c.BearerTokenFile, c.ClientCA, c.TLSCert, c.TLSKey = "", "ca", "c", "k" }, "", [4]bool{true, true, true, false}},
		"nothing at all":           {func(c *Config) { c.BearerTokenFile, c.JWKSFile, c.LogoutAudiences = "", "", nil }, "no way to authenticate callers", [4]bool{}},
		"keys for oauth, no one":   {func(c *Config) { c.BearerTokenFile, c.LogoutAudiences = "", nil }, "no caller could authenticate", [4]bool{}},
		"keys for oauth with ssf":  {func(c *Config) { c.BearerTokenFile, c.LogoutAudiences, c.SSFTransmitters = "", nil, "ssf.yaml" }, "no caller could authenticate", [4]bool{}},
		"logout audience, no keys": {func(c *Config) { ssfOnly(c); c.SSFTransmitters, c.LogoutAudiences = "", []string{testRP} }, "needs --jwks-file", [4]bool{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "nats://127.0.0.1:1", newSigner(t, "k1"))
			tc.mod(cfg)
			err := cfg.Validate()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := [4]bool{cfg.revocationsOn(), cfg.oauthRevokeOn(), cfg.logoutOn(), cfg.ssfOn()}
			if got != tc.served {
				t.Fatalf("serves %v, want %v", got, tc.served)
			}
		})
	}
}

// Started without the API credentials, for the endpoints that authenticate each
// request (SSF push, back-channel logout): those work, and /v1/revocations and
// /oauth2/revoke answer 404, saying why, whatever the caller sends.
func TestServesWithoutAPICredentials(t *testing.T) {
	tr := ssftest.New(t, "https://revoked.example.com")
	dir := t.TempDir()
	auth := "Bearer ssf-push-secret-for-tests"
	yaml := fmt.Sprintf("transmitters:\n  - issuer: %s\n    jwks_uri: %s\n    audience: https://revoked.example.com\n    push_authorization_file: %s\n",
		tr.Issuer, tr.JWKSURI(), writeSecret(t, dir, "push", auth))
	f := newFixture(t, func(c *Config) {
		c.BearerTokenFile = ""
		c.SSFTransmitters = writeSecret(t, dir, "ssf.yaml", yaml)
	})
	if r := f.postJSON(`{"type":"jti","jti":"x","exp":1767225600}`, bearer); r.code != http.StatusNotFound || !strings.Contains(r.body, "--bearer-token-file") {
		t.Fatalf("/v1/revocations: %d %s", r.code, r.body)
	}
	tok := f.key.sign(t, accessClaims("at-1", time.Now().Add(time.Hour)), nil)
	if r := f.postForm("/oauth2/revoke", url.Values{"token": {tok}}, bearer); r.code != http.StatusNotFound || !strings.Contains(r.body, "--oauth-client") {
		t.Fatalf("/oauth2/revoke: %d %s", r.code, r.body)
	}
	if r := f.postForm("/backchannel-logout", url.Values{"logout_token": {f.key.sign(t, logoutClaims("lt-1", nil), logoutTyp)}}, nil); r.code != http.StatusOK {
		t.Fatalf("/backchannel-logout: %d %s", r.code, r.body)
	}
	set := tr.Sign(tr.KeycloakSessionRevoked("user-1", "sess-1", f.srv.now()), nil)
	if code, body, err := ssftest.Push(f.base+"/ssf/events", auth, set); err != nil || code != http.StatusAccepted {
		t.Fatalf("/ssf/events: %d %v %v", code, body, err)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("%d events, want the logout's and the SET's", n)
	}
}

//go:build idp

package idp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/testsupport"
)

// hydra is Ory Hydra, `hydra serve all --dev` with an in-memory database and JWT
// access tokens. The test plays its login, consent and logout app through the admin
// API, as such an app does.
type hydra struct {
	admin string // admin API base URL
	d     discovery
	proc  *proc
}

// startHydra runs Hydra. Its consent app may copy the login session id into the access
// token as a top-level sid claim (oauth2.allowed_top_level_claims), which Hydra's
// access tokens otherwise lack.
func startHydra(t *testing.T) *hydra {
	t.Helper()
	public, admin := testsupport.FreePort(t), testsupport.FreePort(t)
	cfg := fmt.Sprintf(`dsn: memory
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
urls:
  self: {issuer: "http://127.0.0.1:%d"}
  login: "http://%s/login"
  consent: "http://%s/consent"
  logout: "http://%s/logout"
secrets: {system: ["hydra-system-secret-%d"]}
strategies: {access_token: jwt}
oauth2:
  allowed_top_level_claims: [sid]
log: {level: info, format: json}
`, public, admin, public, appHost, appHost, appHost, time.Now().UnixNano())
	file := filepath.Join(t.TempDir(), "hydra.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _ := startProc(t, "hydra", binary(t, "HYDRA_BIN", "hydra"), []string{"serve", "all", "--dev", "-c", file}, nil, "")
	h := &hydra{admin: "http://127.0.0.1:" + strconv.Itoa(admin), proc: p}
	testsupport.WaitFor(t, 60*time.Second, "hydra ready", func() error {
		resp, err := httpClient.Get(h.admin + "/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/health/ready: %d", resp.StatusCode)
		}
		return nil
	})
	h.d = discover(t, "http://127.0.0.1:"+strconv.Itoa(public))
	return h
}

// adminCall sends body (JSON, when not nil) to the admin API and decodes the answer.
func (h *hydra) adminCall(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, h.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	doJSON(t, req, out)
}

// createClient registers a relying party whose back-channel logout URI is bcl.
func (h *hydra) createClient(t *testing.T, id, secret, bcl string) {
	t.Helper()
	h.adminCall(t, http.MethodPost, "/admin/clients", map[string]any{
		"client_id":                           id,
		"client_secret":                       secret,
		"grant_types":                         []string{"authorization_code", "client_credentials"},
		"response_types":                      []string{"code"},
		"scope":                               "openid",
		"redirect_uris":                       []string{redirectURI},
		"post_logout_redirect_uris":           []string{postLogoutURI},
		"backchannel_logout_uri":              bcl,
		"backchannel_logout_session_required": true,
	}, nil)
}

// redirect is the admin API's answer to an accepted request.
type redirect struct {
	To string `json:"redirect_to"`
}

// login runs the authorization code flow for client in b: the login and consent
// requests Hydra hands to the login/consent app are accepted through the admin API
// (the login remembered, so that it is a session that can be logged out). With
// sidInAccessToken the consent app puts the login session id into the access token.
func (h *hydra) login(t *testing.T, b *browser, client, secret, subject string, sidInAccessToken bool) tokens {
	t.Helper()
	p := b.visit(t, h.d.AuthorizationURL+"?"+url.Values{
		"client_id":     {client},
		"response_type": {"code"},
		"scope":         {"openid"},
		"redirect_uri":  {redirectURI},
		"state":         {"state-of-" + client},
	}.Encode(), nil)
	var r redirect
	h.adminCall(t, http.MethodPut, "/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(p.appParam(t, "login_challenge")),
		map[string]any{"subject": subject, "remember": true}, &r)
	p = b.visit(t, r.To, nil)
	challenge := url.QueryEscape(p.appParam(t, "consent_challenge"))
	var consent struct {
		LoginSessionID string   `json:"login_session_id"`
		RequestedScope []string `json:"requested_scope"`
	}
	h.adminCall(t, http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+challenge, nil, &consent)
	session := map[string]any{}
	if sidInAccessToken {
		session["access_token"] = map[string]any{"sid": consent.LoginSessionID}
	}
	h.adminCall(t, http.MethodPut, "/admin/oauth2/auth/requests/consent/accept?consent_challenge="+challenge,
		map[string]any{"grant_scope": consent.RequestedScope, "session": session}, &r)
	p = b.visit(t, r.To, nil)
	var tk tokens
	postForm(t, h.d.TokenURL, client, secret, url.Values{
		"grant_type":   {"authorization_code"},
		"code":         {p.appParam(t, "code")},
		"redirect_uri": {redirectURI},
	}, &tk)
	if tk.AccessToken == "" || tk.IDToken == "" {
		t.Fatalf("token endpoint gave no access token or ID token")
	}
	return tk
}

// clientCredentials gets an access token for client itself.
func (h *hydra) clientCredentials(t *testing.T, client, secret string) string {
	t.Helper()
	var tk tokens
	postForm(t, h.d.TokenURL, client, secret, url.Values{"grant_type": {"client_credentials"}}, &tk)
	return tk.AccessToken
}

// logout is RP-initiated logout through Hydra: the logout request is accepted through
// the admin API, and Hydra ends the login session, sends a back-channel logout to
// every client of it (asynchronously) and returns the browser to the post-logout URI.
func (h *hydra) logout(t *testing.T, b *browser, tk tokens) {
	t.Helper()
	p := b.visit(t, h.d.EndSessionURL+"?"+url.Values{
		"id_token_hint":            {tk.IDToken},
		"post_logout_redirect_uri": {postLogoutURI},
		"state":                    {"logout-state"},
	}.Encode(), nil)
	var r redirect
	h.adminCall(t, http.MethodPut, "/admin/oauth2/auth/requests/logout/accept?logout_challenge="+url.QueryEscape(p.appParam(t, "logout_challenge")), nil, &r)
	if p = b.visit(t, r.To, nil); p.app == nil || p.app.Path != "/bye" {
		t.Fatalf("logout did not return to the post-logout URI: %d at %s: %.800s", p.status, p.url, p.body)
	}
}

// TestHydra drives Ory Hydra v2.3.0. Its logout token carries sid but neither sub nor
// exp (ingest: --logout-allow-missing-exp), and its access tokens carry no sid, so a
// logout can reach them only when the consent app copies the login session id into
// them as a top-level sid (oauth2.allowed_top_level_claims: [sid]) and ingest cuts off
// by sid. Without that sid, --logout-cutoff client (or user) cannot name the user, and
// ingest refuses the logout token loudly (400, counted) rather than revoke nothing in
// silence. RFC 7009 at ingest denies a token by its jti.
func TestHydra(t *testing.T) {
	natsURL := startNATS(t)
	h := startHydra(t)
	iss := h.d.Issuer
	sidIngest := startIngest(t, "ingest-sid", 0, natsURL, h.d.JWKSURL, iss,
		"--logout-audience", "app-a", "--logout-audience", "app-b",
		"--logout-cutoff", "sid", "--logout-allow-missing-exp", iss)
	clientIngest := startIngest(t, "ingest-client", 0, natsURL, h.d.JWKSURL, iss,
		"--logout-audience", "app-c",
		"--logout-cutoff", "client", "--logout-allow-missing-exp", iss)
	strictIngest := startIngest(t, "ingest-strict", 0, natsURL, h.d.JWKSURL, iss,
		"--logout-audience", "app-d", "--logout-cutoff", "sid")
	sc := startSidecar(t, natsURL, h.d.JWKSURL, iss)
	var tokens []string // every token the IdP issued, which no log of ours may hold
	defer func() {
		noTokenLogged(t, []*proc{sc.proc, sidIngest.proc, clientIngest.proc, strictIngest.proc}, tokens...)
	}()
	secrets := map[string]string{}
	for id, in := range map[string]*ingest{"app-a": sidIngest, "app-b": sidIngest, "app-c": clientIngest, "app-d": strictIngest} {
		secrets[id] = "secret-of-" + id + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		h.createClient(t, id, secrets[id], in.url+"/backchannel-logout")
	}

	t.Run("sid in access tokens, --logout-cutoff sid", func(t *testing.T) {
		b := newBrowser()
		a := h.login(t, b, "app-a", secrets["app-a"], "alice", true)
		bb := h.login(t, b, "app-b", secrets["app-b"], "alice", true)
		tokens = append(tokens, a.AccessToken, a.IDToken, bb.AccessToken, bb.IDToken)
		ac, bc := claims(t, a.AccessToken), claims(t, bb.AccessToken)
		step(t, "Hydra access token claims (the consent app adding sid): %v", keys(ac))
		if ac["sid"] == nil || ac["sid"] != bc["sid"] || ac["sid"] != claims(t, a.IDToken)["sid"] {
			t.Fatalf("access tokens' sid %v and %v, ID token's %v: want the login session id in all", ac["sid"], bc["sid"], claims(t, a.IDToken)["sid"])
		}
		sc.wantAllowed(t, "app-a's token", a.AccessToken)
		sc.wantAllowed(t, "app-b's token", bb.AccessToken)
		start := time.Now()
		h.logout(t, b, a)
		// Hydra's logout ends the login session at every client of it: both are sent a
		// logout token, and the sid cutoff denies both tokens.
		sc.waitDenied(t, "app-a's token, after logout", a.AccessToken, "revoked_cutoff", start)
		sc.waitDenied(t, "app-b's token, after logout", bb.AccessToken, "revoked_cutoff", start)
	})

	t.Run("no sid in access tokens, --logout-cutoff client", func(t *testing.T) {
		b := newBrowser()
		c := h.login(t, b, "app-c", secrets["app-c"], "bob", false)
		tokens = append(tokens, c.AccessToken, c.IDToken)
		cc := claims(t, c.AccessToken)
		step(t, "Hydra access token claims (as Hydra issues them): %v", keys(cc))
		if _, ok := cc["sid"]; ok {
			t.Fatalf("Hydra's access tokens now carry sid by themselves: --logout-cutoff sid reaches them, and the README should say so")
		}
		sc.wantAllowed(t, "app-c's token", c.AccessToken)
		const refused = `revoked_ingest_events_rejected_total{endpoint="backchannel_logout",reason="no_sub"}`
		h.logout(t, b, c)
		testsupport.WaitFor(t, 10*time.Second, "ingest refuses Hydra's logout token without sub", func() error {
			if got := clientIngest.metric(t, refused); got != 1 {
				return fmt.Errorf("%s = %v, want 1", refused, got)
			}
			return nil
		})
		step(t, "ingest refused the logout token (400, %s)", refused)
		testsupport.WaitFor(t, 10*time.Second, "Hydra logs the refusal", func() error {
			if !h.proc.logContains("but got 400") {
				return fmt.Errorf("hydra has not logged the 400")
			}
			return nil
		})
		sc.wantAllowed(t, "app-c's token, which no logout token can name (documented: Hydra with --logout-cutoff client)", c.AccessToken)
	})

	t.Run("logout token without exp, refused without --logout-allow-missing-exp", func(t *testing.T) {
		b := newBrowser()
		d := h.login(t, b, "app-d", secrets["app-d"], "carol", true)
		tokens = append(tokens, d.AccessToken, d.IDToken)
		sc.wantAllowed(t, "app-d's token", d.AccessToken)
		h.logout(t, b, d)
		testsupport.WaitFor(t, 10*time.Second, "ingest refuses Hydra's logout token without exp", func() error {
			if !strictIngest.proc.logContains("no exp claim (BCL 1.0 requires exp") {
				return fmt.Errorf("ingest-strict has not logged the refusal")
			}
			return nil
		})
		step(t, "ingest without --logout-allow-missing-exp refused the logout token: no exp")
		sc.wantAllowed(t, "app-d's token, its logout refused", d.AccessToken)
	})

	t.Run("RFC 7009", func(t *testing.T) {
		tok := h.clientCredentials(t, "app-a", secrets["app-a"])
		other := h.clientCredentials(t, "app-b", secrets["app-b"])
		tokens = append(tokens, tok, other)
		sc.wantAllowed(t, "app-a's client credentials token", tok)
		start := time.Now()
		if code, body := sidIngest.revoke(t, tok, "", ""); code != http.StatusOK {
			t.Fatalf("/oauth2/revoke: %d %s", code, body)
		}
		sc.waitDenied(t, "app-a's client credentials token, revoked by RFC 7009", tok, "revoked_jti", start)
		sc.wantAllowed(t, "app-b's client credentials token", other)
	})
}

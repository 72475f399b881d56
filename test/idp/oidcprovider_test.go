//go:build idp

package idp

import (
	"encoding/json"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"
)

// opResource is the API oidc-provider's JWT access tokens are for (RFC 8707, RFC 9068).
const opResource = "https://api.example"

// oidcProvider is panva's oidc-provider, run by test/idp/oidc-provider/provider.js.
type oidcProvider struct {
	d       discovery
	secrets map[string]string // client_id → client_secret
}

// startOIDCProvider runs the provider with the given relying parties, their
// back-channel logout URI set to backchannelURI.
func startOIDCProvider(t *testing.T, backchannelURI string, clientIDs ...string) *oidcProvider {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v (make test-idp needs node and npm)", err)
	}
	dir := filepath.Join(repoRoot, "test", "idp", "oidc-provider")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		t.Fatalf("oidc-provider is not installed (%v): run make test-idp, which runs npm ci in %s", err, dir)
	}
	op := &oidcProvider{secrets: map[string]string{}}
	var clients []map[string]any
	for _, id := range clientIDs {
		op.secrets[id] = "secret-of-" + id + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		clients = append(clients, map[string]any{
			"client_id":                           id,
			"client_secret":                       op.secrets[id],
			"grant_types":                         []string{"authorization_code"},
			"response_types":                      []string{"code"},
			"redirect_uris":                       []string{redirectURI},
			"post_logout_redirect_uris":           []string{postLogoutURI},
			"backchannel_logout_uri":              backchannelURI,
			"backchannel_logout_session_required": true,
			"scope":                               "openid api",
		})
	}
	cfg, _ := json.Marshal(clients)
	_, rec := startProc(t, "oidc-provider", node, []string{filepath.Join(dir, "provider.js")},
		[]string{"IDP_CLIENTS=" + string(cfg), "IDP_RESOURCE=" + opResource}, "oidc-provider listening")
	issuer, _ := rec["issuer"].(string)
	op.d = discover(t, issuer)
	return op
}

var formAction = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
var xsrfInput = regexp.MustCompile(`name="xsrf" value="([^"]+)"`)

// login runs the authorization code flow for client in the browser b, through the
// dev interactions' login and consent forms as a user fills them, and returns the
// tokens the client gets for the code.
func (op *oidcProvider) login(t *testing.T, b *browser, client, user string) tokens {
	t.Helper()
	p := b.visit(t, op.d.AuthorizationURL+"?"+url.Values{
		"client_id":     {client},
		"response_type": {"code"},
		"scope":         {"openid api"},
		"redirect_uri":  {redirectURI},
		"state":         {"state-" + client},
		"resource":      {opResource},
	}.Encode(), nil)
	for i := 0; p.app == nil && i < 4; i++ {
		m := formAction.FindStringSubmatch(p.body)
		if m == nil {
			t.Fatalf("no form on %s (%d): %.800s", p.url, p.status, p.body)
		}
		action, err := p.url.Parse(html.UnescapeString(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		form := url.Values{"prompt": {"consent"}}
		if regexp.MustCompile(`name="prompt" value="login"`).MatchString(p.body) {
			form = url.Values{"prompt": {"login"}, "login": {user}, "password": {"any"}}
		}
		p = b.visit(t, action.String(), form)
	}
	code := p.appParam(t, "code")
	var tk tokens
	postForm(t, op.d.TokenURL, client, op.secrets[client], url.Values{
		"grant_type":   {"authorization_code"},
		"code":         {code},
		"redirect_uri": {redirectURI},
		"resource":     {opResource},
	}, &tk)
	if tk.AccessToken == "" || tk.IDToken == "" {
		t.Fatalf("token endpoint gave no access token or ID token")
	}
	return tk
}

// logout is RP-initiated logout from client's session in b. everywhere is the user's
// answer to the provider's question: "Yes, sign me out" ends the whole session and
// every client of it gets a back-channel logout; "No, stay signed in" signs the user
// out of this client alone.
func (op *oidcProvider) logout(t *testing.T, b *browser, client string, tk tokens, everywhere bool) {
	t.Helper()
	p := b.visit(t, op.d.EndSessionURL+"?"+url.Values{
		"id_token_hint":            {tk.IDToken},
		"post_logout_redirect_uri": {postLogoutURI},
		"client_id":                {client},
	}.Encode(), nil)
	action, xsrf := formAction.FindStringSubmatch(p.body), xsrfInput.FindStringSubmatch(p.body)
	if action == nil || xsrf == nil {
		t.Fatalf("no logout form on %s (%d): %.800s", p.url, p.status, p.body)
	}
	u, err := p.url.Parse(html.UnescapeString(action[1]))
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"xsrf": {html.UnescapeString(xsrf[1])}}
	if everywhere {
		form.Set("logout", "yes")
	}
	if p = b.visit(t, u.String(), form); p.app == nil || p.app.Path != "/bye" {
		t.Fatalf("logout did not return to the post-logout URI: %d at %s: %.800s", p.status, p.url, p.body)
	}
}

// TestOIDCProvider: oidc-provider's access tokens carry no sid, and its logout tokens
// carry sub (and sid), so ingest runs with --logout-cutoff client. A logout at app-a
// alone denies app-a's token and leaves app-b's allowed; a logout of the whole session
// then denies app-b's. RFC 7009 at ingest denies one token by its jti.
func TestOIDCProvider(t *testing.T) {
	natsURL := startNATS(t)
	ingestPort := freePort(t)
	op := startOIDCProvider(t, "http://127.0.0.1:"+strconv.Itoa(ingestPort)+"/backchannel-logout", "app-a", "app-b")
	in := startIngest(t, "ingest", ingestPort, natsURL, op.d.JWKSURL, op.d.Issuer,
		"--audience", opResource,
		"--logout-audience", "app-a", "--logout-audience", "app-b",
		"--logout-cutoff", "client")
	sc := startSidecar(t, natsURL, op.d.JWKSURL, op.d.Issuer)

	b := newBrowser()
	a := op.login(t, b, "app-a", "alice")
	bb := op.login(t, b, "app-b", "alice")
	a2 := op.login(t, b, "app-a", "alice")
	ac := claims(t, a.AccessToken)
	step(t, "oidc-provider access token claims: %v", keys(ac))
	if ac["client_id"] != "app-a" || ac["sub"] != "alice" || ac["aud"] != opResource {
		t.Fatalf("access token: client_id %v, sub %v, aud %v; want app-a, alice, %s", ac["client_id"], ac["sub"], ac["aud"], opResource)
	}
	if _, ok := ac["sid"]; ok {
		t.Fatalf("oidc-provider's access tokens now carry sid: --logout-cutoff sid would do, and this test should say so")
	}
	sc.wantAllowed(t, "app-a's token", a.AccessToken)
	sc.wantAllowed(t, "app-b's token", bb.AccessToken)
	sc.wantAllowed(t, "app-a's second token", a2.AccessToken)

	start := time.Now()
	in.revoke(t, a2.AccessToken)
	sc.waitDenied(t, "app-a's second token, revoked by RFC 7009", a2.AccessToken, "revoked_jti", start)
	sc.wantAllowed(t, "app-a's first token, after the second's RFC 7009 revocation", a.AccessToken)

	start = time.Now()
	op.logout(t, b, "app-a", a, false)
	sc.waitDenied(t, "app-a's token, after logging out of app-a", a.AccessToken, "revoked_cutoff", start)
	sc.wantAllowed(t, "app-b's token, after logging out of app-a alone", bb.AccessToken)
	if got := in.metric(t, `revoked_ingest_events_published_total{endpoint="backchannel_logout"}`); got != 1 {
		t.Fatalf("backchannel_logout published %v events, want 1 (one client logged out)", got)
	}

	start = time.Now()
	op.logout(t, b, "app-b", bb, true)
	sc.waitDenied(t, "app-b's token, after signing out everywhere", bb.AccessToken, "revoked_cutoff", start)
}

// keys lists a claim set's names, for the log: never a value, a token's included.
func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

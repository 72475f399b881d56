//go:build idp

package idp

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/testsupport"
)

// opResource is the API oidc-provider's JWT access tokens are for (RFC 8707, RFC 9068).
const opResource = "https://api.example"

// oidcProvider is panva's oidc-provider, run by test/idp/oidc-provider/provider.js.
type oidcProvider struct {
	d       discovery
	secrets map[string]string // client_id → client_secret
	proc    *proc
}

// startOIDCProvider runs the provider with the given relying parties: client_id →
// back-channel logout URI.
func startOIDCProvider(t *testing.T, backchannelURIs map[string]string) *oidcProvider {
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
	for id, backchannelURI := range backchannelURIs {
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
	p, rec := startProc(t, "oidc-provider", node, []string{filepath.Join(dir, "provider.js")},
		[]string{"IDP_CLIENTS=" + string(cfg), "IDP_RESOURCE=" + opResource}, "oidc-provider listening")
	issuer, _ := rec["issuer"].(string)
	op.d = discover(t, issuer)
	op.proc = p
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

// sentLogout reports whether the provider has had a 200 for a logout token to client.
func (op *oidcProvider) sentLogout(client string) bool {
	return op.proc.logContains(`{"msg":"backchannel logout sent","client":"` + client + `"}`)
}

// TestOIDCProvider: oidc-provider's access tokens carry no sid, and its logout tokens
// carry sub (and sid), so ingest runs with --logout-cutoff client: a logout at app-a
// alone denies app-a's token and leaves app-b's allowed; a logout of the whole session
// then denies app-b's. Under --logout-cutoff user (a second ingest, for app-u), a
// logout at one app denies the user's tokens at every app. RFC 7009 at ingest, the
// client authenticated with its own credentials, denies one of its tokens by its jti,
// and refuses to revoke another client's.
func TestOIDCProvider(t *testing.T) {
	natsURL := startNATS(t)
	clientPort, userPort := testsupport.FreePort(t), testsupport.FreePort(t)
	bcl := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) + "/backchannel-logout" }
	op := startOIDCProvider(t, map[string]string{"app-a": bcl(clientPort), "app-b": bcl(clientPort), "app-u": bcl(userPort)})
	var tokens []string // every token the IdP issued, which no log of ours may hold
	in := startIngest(t, "ingest-client", clientPort, natsURL, op.d.JWKSURL, op.d.Issuer,
		"--audience", opResource,
		"--logout-audience", "app-a", "--logout-audience", "app-b",
		"--logout-cutoff", "client",
		"--oauth-client", "app-a:"+secretFile(t, "app-a-secret", op.secrets["app-a"]))
	userIngest := startIngest(t, "ingest-user", userPort, natsURL, op.d.JWKSURL, op.d.Issuer,
		"--audience", opResource, "--logout-audience", "app-u", "--logout-cutoff", "user")
	sc := startSidecar(t, natsURL, op.d.JWKSURL, op.d.Issuer)
	defer func() { noTokenLogged(t, []*proc{sc.proc, in.proc, userIngest.proc}, tokens...) }()

	t.Run("--logout-cutoff client, RFC 7009", func(t *testing.T) {
		b := newBrowser()
		a := op.login(t, b, "app-a", "alice")
		bb := op.login(t, b, "app-b", "alice")
		a2 := op.login(t, b, "app-a", "alice")
		tokens = append(tokens, a.AccessToken, a.IDToken, bb.AccessToken, bb.IDToken, a2.AccessToken, a2.IDToken)
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
		if code, body := in.revoke(t, a2.AccessToken, "app-a", op.secrets["app-a"]); code != http.StatusOK {
			t.Fatalf("app-a revoking its own token: %d %s", code, body)
		}
		sc.waitDenied(t, "app-a's second token, revoked by app-a (RFC 7009)", a2.AccessToken, "revoked_jti", start)
		sc.wantAllowed(t, "app-a's first token, after the second's RFC 7009 revocation", a.AccessToken)
		if code, body := in.revoke(t, bb.AccessToken, "app-a", op.secrets["app-a"]); code != http.StatusBadRequest || !strings.Contains(body, "unauthorized_client") {
			t.Fatalf("app-a revoking app-b's token: %d %s, want 400 unauthorized_client", code, body)
		}
		sc.wantAllowed(t, "app-b's token, which app-a may not revoke", bb.AccessToken)

		start = time.Now()
		op.logout(t, b, "app-a", a, false)
		sc.waitDenied(t, "app-a's token, after logging out of app-a", a.AccessToken, "revoked_cutoff", start)
		if !op.sentLogout("app-a") || op.sentLogout("app-b") {
			t.Fatalf("oidc-provider should have sent app-a, and app-a alone, a logout token (app-a: %v, app-b: %v)", op.sentLogout("app-a"), op.sentLogout("app-b"))
		}
		sc.wantAllowed(t, "app-b's token, after logging out of app-a alone", bb.AccessToken)
		if got := in.metric(t, `revoked_ingest_events_published_total{endpoint="backchannel_logout"}`); got != 1 {
			t.Fatalf("backchannel_logout published %v events, want 1 (one client logged out)", got)
		}

		start = time.Now()
		op.logout(t, b, "app-b", bb, true)
		sc.waitDenied(t, "app-b's token, after signing out everywhere", bb.AccessToken, "revoked_cutoff", start)
	})

	t.Run("--logout-cutoff user", func(t *testing.T) {
		b := newBrowser()
		u := op.login(t, b, "app-u", "dave")
		bb := op.login(t, b, "app-b", "dave")
		tokens = append(tokens, u.AccessToken, u.IDToken, bb.AccessToken, bb.IDToken)
		sc.wantAllowed(t, "app-u's token", u.AccessToken)
		sc.wantAllowed(t, "app-b's token", bb.AccessToken)
		start := time.Now()
		op.logout(t, b, "app-u", u, false)
		sc.waitDenied(t, "app-u's token, after logging out of app-u", u.AccessToken, "revoked_cutoff", start)
		sc.waitDenied(t, "app-b's token, after logging out of app-u alone (user mode: every app)", bb.AccessToken, "revoked_cutoff", start)
	})
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

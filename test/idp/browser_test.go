//go:build idp

package idp

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"
)

// appHost is where the relying party and the login app would be: nothing listens
// there. The browser stops at a redirect to it, as the IdP hands the user back.
const appHost = "127.0.0.1:1"

// redirectURI and postLogoutURI are the relying parties' registered URIs at appHost.
const (
	redirectURI   = "http://" + appHost + "/cb"
	postLogoutURI = "http://" + appHost + "/bye"
)

// browser is a user agent with cookies that follows the IdP's redirects.
type browser struct{ c *http.Client }

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{c: &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == appHost || len(via) > 20 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}}
}

// page is where a visit ended: a redirect to the app (app set), or a page the IdP
// served.
type page struct {
	app    *url.URL // the redirect to appHost, if it ended there
	url    *url.URL // the last URL fetched
	status int
	body   string
}

// visit fetches u (a form POST when form is not nil) and follows redirects within the
// IdP.
func (b *browser) visit(t *testing.T, u string, form url.Values) page {
	t.Helper()
	var resp *http.Response
	var err error
	if form == nil {
		resp, err = b.c.Get(u)
	} else {
		resp, err = b.c.PostForm(u, form)
	}
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	p := page{url: resp.Request.URL, status: resp.StatusCode, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
		if p.app, err = resp.Request.URL.Parse(loc); err != nil {
			t.Fatalf("browser: Location %q: %v", loc, err)
		}
	}
	return p
}

// appParam returns the query parameter name of the redirect to the app, failing the
// test if the visit did not end there or the parameter is absent.
func (p page) appParam(t *testing.T, name string) string {
	t.Helper()
	if p.app == nil {
		t.Fatalf("expected a redirect to the app, got %d at %s: %.800s", p.status, p.url, p.body)
	}
	v := p.app.Query().Get(name)
	if v == "" {
		t.Fatalf("redirect to %s%s has no %s (error: %q %q)", p.app.Host, p.app.Path, name, p.app.Query().Get("error"), p.app.Query().Get("error_description"))
	}
	return v
}

// tokens is a token endpoint's answer.
type tokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
}

// postForm posts form to u with HTTP Basic client authentication (when id is set) and
// decodes the JSON answer into out, failing the test on a status other than 2xx.
func postForm(t *testing.T, u, id, secret string, form url.Values, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	doJSON(t, req, out)
}

// doJSON sends req and decodes the JSON answer into out (when not nil), failing the
// test on a status other than 2xx.
func doJSON(t *testing.T, req *http.Request, out any) {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s %s: %v: %.300s", req.Method, req.URL.Path, err, body)
		}
	}
}

// claims decodes a JWT's payload without verifying it: the test only looks at what
// the IdP put in its tokens (the sidecar verifies them).
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	c := map[string]any{}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// discovery is the part of an OpenID provider's metadata the tests use.
type discovery struct {
	Issuer             string `json:"issuer"`
	AuthorizationURL   string `json:"authorization_endpoint"`
	TokenURL           string `json:"token_endpoint"`
	JWKSURL            string `json:"jwks_uri"`
	EndSessionURL      string `json:"end_session_endpoint"`
	BackchannelLogout  bool   `json:"backchannel_logout_supported"`
	BackchannelSession bool   `json:"backchannel_logout_session_supported"`
}

func discover(t *testing.T, base string) discovery {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(base, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		t.Fatal(err)
	}
	var d discovery
	doJSON(t, req, &d)
	if !d.BackchannelLogout {
		t.Fatalf("%s does not support back-channel logout", d.Issuer)
	}
	return d
}

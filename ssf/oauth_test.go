package ssf_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// tokenServer is an OAuth 2.0 authorization server's token endpoint for the client
// credentials grant (RFC 6749 section 4.4): it issues access tokens of a fixed
// lifetime to one client, and says which tokens are valid.
type tokenServer struct {
	*httptest.Server
	clientID, secret string
	lifetime         time.Duration

	mu       sync.Mutex
	issued   map[string]time.Time // access token -> expiry
	all      []string             // every token issued
	requests int
	scopes   []string // the scope of each request
}

func newTokenServer(t *testing.T, clientID, secret string, lifetime time.Duration) *tokenServer {
	s := &tokenServer{clientID: clientID, secret: secret, lifetime: lifetime, issued: map[string]time.Time{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.token))
	t.Cleanup(s.Close)
	return s
}

func (s *tokenServer) URL() string { return s.Server.URL + "/token" }

func (s *tokenServer) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.clientID || secret != s.secret {
		// A careless server that echoes what it was given: the receiver must not log it.
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client",
			"error_description": fmt.Sprintf("client %s with secret %s: authentication failed", id, secret)})
		return
	}
	s.scopes = append(s.scopes, r.PostForm.Get("scope"))
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "at-" + hex.EncodeToString(b)
	s.issued[tok] = time.Now().Add(s.lifetime)
	s.all = append(s.all, tok)
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(s.lifetime / time.Second)})
}

// valid reports whether tok was issued and has not expired nor been revoked.
func (s *tokenServer) valid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.issued[tok]
	return ok && time.Now().Before(exp)
}

// revokeAll invalidates every token issued so far (the transmitter answers 401).
func (s *tokenServer) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued = map[string]time.Time{}
}

func (s *tokenServer) stats() (requests int, tokens []string, scopes []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, append([]string(nil), s.all...), append([]string(nil), s.scopes...)
}

// oauthSpec is a transmitter that takes only the token server's access tokens, and
// the receiver's entry for it with client_credentials (secret in a file) and extra.
func oauthSpec(t *testing.T, tr *ssftest.Transmitter, ts *tokenServer, secret, extra string) (*spec, string) {
	tr.AcceptBearer(ts.valid)
	file := writeFile(t, t.TempDir(), "client-secret", secret+"\n")
	return &spec{tr: tr, noBearer: true, extra: extra + fmt.Sprintf(
		"    client_credentials:\n      token_url: %s\n      client_id: %s\n      client_secret_file: %s\n      scopes: [ssf.read, ssf.manage]\n",
		ts.URL(), ts.clientID, file)}, file
}

// secretsNotLogged fails when the logs hold the client secret or an access token.
func secretsNotLogged(t *testing.T, e *env, ts *tokenServer, secrets ...string) {
	t.Helper()
	_, tokens, _ := ts.stats()
	logs := e.logs.String()
	for _, s := range append(secrets, tokens...) {
		if strings.Contains(logs, s) {
			t.Fatalf("the logs hold a secret or token %q:\n%s", s, logs)
		}
	}
}

// With client_credentials the receiver creates its stream and polls it with access
// tokens from the transmitter's authorization server, obtained once and replaced
// before they expire (not one per request, and never one the transmitter refuses).
func TestOAuthClientCredentialsManagedPollStream(t *testing.T) {
	const secret = "client-secret-0123456789abcdef"
	ts := newTokenServer(t, "revoked-receiver", secret, 2*time.Second)
	tr := ssftest.New(t, audience)
	tx, _ := oauthSpec(t, tr, ts, secret, "    stream: {delivery: poll}\n    poll_interval: 50ms\n")
	start := time.Now()
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "verification acked", func() bool { return len(tr.Acked()) == 1 })
	if s := tr.Streams(); len(s) != 1 || s[0].Delivery["method"] != "urn:ietf:rfc:8936" {
		t.Fatalf("streams %+v", s)
	}
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 10*time.Second, "SET acked", func() bool { return len(tr.Acked()) == 2 })
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" {
		t.Fatalf("stream %+v", evs)
	}
	// Past two lifetimes of a token: it was replaced as it expired.
	testsupport.Until(t, 10*time.Second, "tokens replaced", func() bool { n, _, _ := ts.stats(); return n >= 3 })
	polls := tr.Polls()
	testsupport.Until(t, 10*time.Second, "polls with the new token", func() bool { return tr.Polls() > polls+3 })
	n, _, scopes := ts.stats()
	if limit := int(time.Since(start)/time.Second) + 2; n > limit { // one a second: half a 2 s lifetime
		t.Errorf("%d token requests in %s", n, time.Since(start))
	}
	if tr.Refused() != 0 {
		t.Errorf("the transmitter refused %d requests: a token was sent expired", tr.Refused())
	}
	if v := e.metric("revoked_ssf_poll_errors_total", nil); v != 0 {
		t.Errorf("%v poll errors", v)
	}
	if v := e.metric("revoked_ssf_oauth_token_requests_total", map[string]string{"result": "issued"}); int(v) != n {
		t.Errorf("issued counted %v, the server issued %d", v, n)
	}
	if scopes[0] != "ssf.read ssf.manage" {
		t.Errorf("scope %q", scopes[0])
	}
	secretsNotLogged(t, e, ts, secret)
}

// A token the transmitter refuses before its expiry (revoked at the authorization
// server) is replaced at once: the request is sent again with a new token, once, and
// the poll does not fail.
func TestOAuthTokenRefreshedOn401(t *testing.T) {
	const secret = "client-secret-0123456789abcdef"
	ts := newTokenServer(t, "revoked-receiver", secret, time.Hour)
	tr := ssftest.New(t, audience)
	tx, _ := oauthSpec(t, tr, ts, secret, "    poll_endpoint: "+tr.PollURL()+"\n    poll_interval: 50ms\n")
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "polled", func() bool { return tr.Polls() > 0 })
	ts.revokeAll()
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 10*time.Second, "SET acked", func() bool { return len(tr.Acked()) == 1 })
	if n, _, _ := ts.stats(); n != 2 {
		t.Errorf("%d token requests, want 2 (the first, and one after the 401)", n)
	}
	if tr.Refused() != 1 {
		t.Errorf("%d requests refused, want 1", tr.Refused())
	}
	if v := e.metric("revoked_ssf_poll_errors_total", nil); v != 0 {
		t.Errorf("%v poll errors: the 401 was not retried with a new token", v)
	}
	secretsNotLogged(t, e, ts, secret)
}

// A wrong client secret is a clear error (logged without the secret, even when the
// token endpoint echoes it) and a metric; the secret file, corrected, is read again
// and the polls succeed.
func TestOAuthWrongSecret(t *testing.T) {
	const secret, wrong = "client-secret-0123456789abcdef", "not-the-secret-fedcba9876543210"
	ts := newTokenServer(t, "revoked-receiver", secret, time.Hour)
	tr := ssftest.New(t, audience)
	tx, file := oauthSpec(t, tr, ts, wrong, "    poll_endpoint: "+tr.PollURL()+"\n    poll_interval: 50ms\n")
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "refusal counted", func() bool {
		return e.metric("revoked_ssf_oauth_token_requests_total", map[string]string{"result": "refused"}) >= 1 &&
			e.metric("revoked_ssf_poll_errors_total", nil) >= 1
	})
	testsupport.Until(t, 5*time.Second, "refusal logged", func() bool {
		return strings.Contains(e.logs.String(), "the token endpoint answered HTTP 401 (invalid_client")
	})
	if logs := e.logs.String(); !strings.Contains(logs, "check client_credentials.client_id, client_secret_file") {
		t.Errorf("the error says not what to check:\n%s", logs)
	}
	if tr.Polls() != 0 {
		t.Errorf("%d polls reached the transmitter without a token", tr.Polls())
	}
	secretsNotLogged(t, e, ts, secret, wrong)

	writeFile(t, filepath.Dir(file), filepath.Base(file), secret)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 20*time.Second, "SET acked with the corrected secret", func() bool { return len(tr.Acked()) == 1 })
	secretsNotLogged(t, e, ts, secret, wrong)
}

package ssf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/revoked-dev/revoked/internal/secretfile"
)

// maxTokenMargin is how long before its expiry an access token is replaced: a request
// sent with it must still find it valid at the transmitter. A short-lived token is
// replaced once half its lifetime has passed instead.
const maxTokenMargin = 10 * time.Second

// oauthClient obtains and holds the receiver's access token at a transmitter from its
// authorization server (RFC 6749 section 4.4). One request for a token at a time: the
// poll worker and stream management share the token it holds.
type oauthClient struct {
	cfg    *ClientCredentials
	secret atomic.Pointer[string] // from client_secret_file, replaced when the file changes
	turn   chan struct{}          // held while the token is read or fetched
	tok    *oauth2.Token          // the token held; turn held to read or write it
	margin time.Duration          // of tok: replaced once less than this is left
}

func newOAuthClient(cfg *ClientCredentials) *oauthClient {
	return &oauthClient{cfg: cfg, turn: make(chan struct{}, 1)}
}

func (c *oauthClient) setSecret(file string) error {
	v, err := secretfile.Read(file)
	if err != nil {
		return err
	}
	c.secret.Store(&v)
	return nil
}

// fresh reports whether tok may still be sent.
func (c *oauthClient) fresh(now time.Time) bool {
	if c.tok == nil {
		return false
	}
	// No expiry given: it is used until the transmitter answers 401.
	return c.tok.Expiry.IsZero() || now.Add(c.margin).Before(c.tok.Expiry)
}

// accessToken returns t's access token, fetching a new one when none is held, the one
// held is about to expire, or it is stale (the token a request was just refused with:
// unless another request replaced it meanwhile, it is fetched again).
func (r *Receiver) accessToken(ctx context.Context, t *transmitter, stale string) (string, error) {
	c := t.oauth
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.turn }()
	now := time.Now()
	if c.fresh(now) && (stale == "" || c.tok.AccessToken != stale) {
		return c.tok.AccessToken, nil
	}
	secret := *c.secret.Load()
	cc := clientcredentials.Config{ClientID: c.cfg.ClientID, ClientSecret: secret, TokenURL: c.cfg.TokenURL, Scopes: c.cfg.Scopes,
		AuthStyle: oauth2.AuthStyleInHeader}
	if c.cfg.AuthMethod == AuthClientSecretPost {
		cc.AuthStyle = oauth2.AuthStyleInParams
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, r.opts.HTTPClient))
	if err != nil { // the token held, if any, stays: the next request tries again
		result, why := describeTokenError(err, secret)
		r.metrics.oauthTokens.WithLabelValues(t.cfg.Issuer, result).Inc()
		return "", fmt.Errorf("oauth token from %s for client %q: %s", c.cfg.TokenURL, c.cfg.ClientID, why)
	}
	c.tok = tok
	c.margin = maxTokenMargin
	if !tok.Expiry.IsZero() {
		c.margin = min(maxTokenMargin, tok.Expiry.Sub(now)/2)
	}
	r.metrics.oauthTokens.WithLabelValues(t.cfg.Issuer, "issued").Inc()
	r.log.Info("ssf oauth access token obtained", "transmitter", t.cfg.Issuer, "client_id", c.cfg.ClientID, "expires_in", expiresIn(tok, now))
	return tok.AccessToken, nil
}

func expiresIn(tok *oauth2.Token, now time.Time) string {
	if tok.Expiry.IsZero() {
		return "unknown"
	}
	return tok.Expiry.Sub(now).Round(time.Second).String()
}

// describeTokenError says why no token was issued, without the secret (the token
// endpoint's own words are bounded and the secret cut out of them, should it echo it),
// and its metrics result: refused (the server said no: credentials, scope, client
// configuration) or failed (unreachable, or a server error; a retry may succeed).
func describeTokenError(err error, secret string) (result, why string) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return "failed", redact(err.Error(), secret)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	code := re.ErrorCode
	if code == "" {
		code = "no error code"
	}
	why = fmt.Sprintf("the token endpoint answered HTTP %d (%s", status, sanitize(code))
	if re.ErrorDescription != "" {
		why += ": " + sanitize(redact(re.ErrorDescription, secret))
	}
	why += ")"
	switch {
	case re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || status == http.StatusUnauthorized:
		why += "; check client_credentials.client_id, client_secret_file and auth_method"
	case re.ErrorCode == "invalid_scope":
		why += "; check client_credentials.scopes"
	}
	if status >= 400 && status < 500 {
		return "refused", why
	}
	return "failed", why
}

func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[client secret]")
}

// send sends the request build makes to the transmitter with the receiver's token: the
// bearer_token_file's, or an OAuth access token. A 401 to an OAuth token is retried
// once with a fresh token (the transmitter may have revoked it, or expired it early).
func (r *Receiver) send(ctx context.Context, t *transmitter, build func() (*http.Request, error)) (*http.Response, error) {
	used := ""
	for attempt := 0; ; attempt++ {
		req, err := build()
		if err != nil {
			return nil, err
		}
		switch {
		case t.oauth != nil:
			if used, err = r.accessToken(ctx, t, used); err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+used)
		case t.bearer.Load() != nil:
			req.Header.Set("Authorization", "Bearer "+*t.bearer.Load())
		}
		res, err := r.opts.HTTPClient.Do(req)
		if err != nil || res.StatusCode != http.StatusUnauthorized || t.oauth == nil || attempt > 0 {
			return res, err
		}
		res.Body.Close()
		r.log.Info("ssf transmitter refused the oauth access token; fetching a new one", "transmitter", t.cfg.Issuer)
	}
}

package ingest

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/event"
)

// oauthCaller authenticates the caller of /oauth2/revoke: with --oauth-client, HTTP
// Basic with a client id and secret (client_secret_basic, RFC 6749 section 2.3.1);
// otherwise the bearer token or a client certificate, as for /v1/revocations. It
// answers the 401 itself and returns ok=false when the caller is not authenticated.
func (s *Server) oauthCaller(w http.ResponseWriter, r *http.Request) (client string, ok bool) {
	if s.clients == nil {
		if ok, _ := s.authenticated(r); ok {
			return "", true
		}
		s.requireCaller(nil)(w, r)
		return "", false
	}
	id, secret, found := r.BasicAuth()
	if found {
		// RFC 6749 section 2.3.1: both are form-encoded before Basic encoding.
		uid, err1 := url.QueryUnescape(id)
		usecret, err2 := url.QueryUnescape(secret)
		if sec, known := s.clients[uid]; known && err1 == nil && err2 == nil && sec.matches(usecret) {
			return uid, true
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="revoked-ingest"`)
	writeError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
	return "", false
}

// sourceRFC7009 is the source of the events /oauth2/revoke publishes.
const sourceRFC7009 = "rfc7009"

// oauthRevoke is POST /oauth2/revoke, RFC 7009 token revocation for JWT access tokens.
// A token that verifies (signature, exp, iss and aud as configured) is revoked by its
// jti. An invalid, unknown or already expired token gets 200 and nothing is published,
// as the RFC requires (section 2.2): the client cannot act on the difference.
// token_type_hint is only logged: a wrong hint never changes the answer.
//
// An --oauth-client revokes only the tokens issued to it (client_id, or azp), unless
// it is an --oauth-privileged-client; the bearer token and mTLS callers may revoke any
// (they may publish any event at /v1/revocations already). A valid token of another
// client is refused with 400 unauthorized_client, published nothing and counted: RFC
// 7009 section 2.1 says the request "is refused and the client is informed of the
// error". Answering 200 instead would tell the client a token is revoked that is not,
// and hides no secret: whose token it is, and that it verifies, anyone holding a JWT
// reads from it and the public JWKS.
func (s *Server) oauthRevoke(w http.ResponseWriter, r *http.Request) {
	const endpoint = "oauth2_revoke"
	if s.keys == nil || !s.cfg.oauthRevokeOn() {
		writeError(w, http.StatusNotFound, "not_found", "/oauth2/revoke is off: start revoked ingest with --jwks-file or --jwks-url, and --bearer-token-file, --client-ca or --oauth-client to authenticate its callers")
		return
	}
	client, ok := s.oauthCaller(w, r)
	if !ok {
		return
	}
	if err := r.ParseForm(); err != nil {
		bodyError(w, err)
		return
	}
	raw := r.PostForm.Get("token")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "the token parameter is required (application/x-www-form-urlencoded body)")
		return
	}
	hint := r.PostForm.Get("token_type_hint")
	claims, why := s.verifyAccessToken(raw)
	if why != "" {
		s.metrics.ignored.WithLabelValues(endpoint, why).Inc()
		s.log.Debug("token not revoked", "endpoint", endpoint, "why", why, "hint", hint, "client", client)
		w.WriteHeader(http.StatusOK)
		return
	}
	if client != "" && !slices.Contains(s.cfg.OAuthPrivileged, client) && tokenClient(claims) != client {
		s.metrics.rejected.WithLabelValues(endpoint, "not_token_owner").Inc()
		s.log.Info("token of another client not revoked", "endpoint", endpoint, "client", client, "jti_sha256", hashID(stringClaim(claims, "jti")))
		writeError(w, http.StatusBadRequest, "unauthorized_client", "the token was not issued to this client (its client_id or azp): a client may revoke its own tokens only")
		return
	}
	ev := event.Event{Type: event.TypeJTI, Reason: "logout", RevokedAt: s.now().Unix(), RevokedBy: "oauth2-revoke", Source: sourceRFC7009}
	if client != "" {
		ev.RevokedBy += ":" + client
	}
	ev.JTI = stringClaim(claims, "jti")
	if ev.JTI == "" {
		ev.JTI = stringClaim(claims, "uti") // Entra ID names its token id uti
	}
	if ev.JTI == "" {
		writeError(w, http.StatusBadRequest, "unsupported_token_type", "the token has no jti claim: it cannot be revoked alone")
		return
	}
	exp, _ := claims.GetExpirationTime()
	ev.Exp = exp.Unix()
	ev.Iss = stringClaim(claims, "iss")
	ev.Sub = stringClaim(claims, "sub")
	res, err := s.pub.Publish(r.Context(), ev)
	if err != nil {
		s.publishFailed(w, endpoint, "the token's claims", err)
		return
	}
	s.countPublished(endpoint, res)
	s.log.Info("token revoked", "endpoint", endpoint, "jti_sha256", hashID(ev.JTI), "iss", ev.Iss, "client", client, "seq", res.Sequence, "duplicate", res.Duplicate)
	w.WriteHeader(http.StatusOK)
}

// verifyAccessToken verifies raw as a JWT access token of the configured issuers and
// audiences. It returns why the token is not to be revoked, or "".
func (s *Server) verifyAccessToken(raw string) (jwt.MapClaims, string) {
	p := s.keys.NewParser(
		jwt.WithLeeway(s.cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
	)
	claims := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(raw, claims, s.keys.Keyfunc); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, "expired"
		}
		return nil, "invalid"
	}
	if !s.issuerOK(stringClaim(claims, "iss")) {
		return nil, "wrong_issuer"
	}
	if len(s.cfg.Audiences) > 0 {
		aud, _ := claims.GetAudience()
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(s.cfg.Audiences, a) }) {
			return nil, "wrong_audience"
		}
	}
	return claims, ""
}

// tokenClient is the client an access token was issued to: client_id (RFC 9068), or
// azp where an IdP names it so (Keycloak, Auth0).
func tokenClient(c jwt.MapClaims) string {
	if id := stringClaim(c, "client_id"); id != "" {
		return id
	}
	return stringClaim(c, "azp")
}

func (s *Server) issuerOK(iss string) bool {
	return len(s.cfg.Issuers) == 0 || slices.Contains(s.cfg.Issuers, iss)
}

func stringClaim(c jwt.MapClaims, name string) string {
	v, _ := c[name].(string)
	return v
}

// unixClaim reads a NumericDate claim as whole seconds.
func unixClaim(c jwt.MapClaims, name string) (int64, error) {
	switch v := c[name].(type) {
	case float64:
		if v <= 0 || v > math.MaxUint32 || math.IsNaN(v) {
			return 0, fmt.Errorf("%s out of range", name)
		}
		return int64(v), nil
	case nil:
		return 0, fmt.Errorf("no %s claim", name)
	default:
		return 0, fmt.Errorf("%s is not a number", name)
	}
}

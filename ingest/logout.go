package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/revoked-dev/revoked/event"
)

// BackchannelLogoutEvent is the member a logout token's events claim must hold.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutToken is what a valid logout token says.
type logoutToken struct {
	iss, sub, sid, jti string
	iat, exp           int64
}

// errLogout is a logout token refused; its text is the error_description.
type errLogout struct{ msg string }

func (e errLogout) Error() string { return e.msg }

func logoutErr(format string, a ...any) error { return errLogout{fmt.Sprintf(format, a...)} }

// validateLogoutToken checks raw as OpenID Connect Back-Channel Logout 1.0 section 2.6
// asks: the signature (keys and algorithms as for an ID token), typ when present
// (logout+jwt, or the generic JWT), iss, aud (one of audiences), iat within maxAge
// (and not in the future), exp, jti, the events claim with the back-channel logout
// member as a JSON object, sub or sid or both, and no nonce.
func (s *Server) validateLogoutToken(raw string) (logoutToken, error) {
	var lt logoutToken
	p := s.keys.NewParser(
		jwt.WithLeeway(s.cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
	)
	claims := jwt.MapClaims{}
	tok, err := p.ParseWithClaims(raw, claims, s.keys.Keyfunc)
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return lt, logoutErr("logout_token is not a JWT")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return lt, logoutErr("logout_token signature does not verify")
		case errors.Is(err, jwt.ErrTokenExpired):
			return lt, logoutErr("logout_token expired")
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return lt, logoutErr("logout_token has no exp")
		case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return lt, logoutErr("logout_token iat is in the future")
		}
		return lt, logoutErr("logout_token invalid: %v", err)
	}
	if typ, ok := tok.Header["typ"]; ok {
		t, _ := typ.(string)
		if !slices.Contains([]string{"logout+jwt", "application/logout+jwt", "jwt"}, strings.ToLower(t)) {
			return lt, logoutErr("logout_token typ %.40q is not logout+jwt", t)
		}
	}
	if _, ok := claims["nonce"]; ok {
		return lt, logoutErr("logout_token must not contain a nonce")
	}
	lt.iss = stringClaim(claims, "iss")
	if lt.iss == "" {
		return lt, logoutErr("logout_token has no iss")
	}
	if !s.issuerOK(lt.iss) {
		return lt, logoutErr("logout_token iss is not an accepted issuer")
	}
	aud, err := claims.GetAudience()
	if err != nil || !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(s.cfg.LogoutAudiences, a) }) {
		return lt, logoutErr("logout_token aud does not name this relying party")
	}
	if lt.iat, err = unixClaim(claims, "iat"); err != nil {
		return lt, logoutErr("logout_token: %v", err)
	}
	if age := s.now().Sub(time.Unix(lt.iat, 0)); age > s.cfg.LogoutMaxAge+s.cfg.Leeway {
		return lt, logoutErr("logout_token issued %s ago, more than %s", age.Round(time.Second), s.cfg.LogoutMaxAge)
	}
	if lt.exp, err = unixClaim(claims, "exp"); err != nil {
		return lt, logoutErr("logout_token: %v", err)
	}
	lt.jti = stringClaim(claims, "jti")
	if lt.jti == "" {
		return lt, logoutErr("logout_token has no jti")
	}
	events, ok := claims["events"].(map[string]any)
	if !ok {
		return lt, logoutErr("logout_token has no events object")
	}
	if _, ok := events[BackchannelLogoutEvent].(map[string]any); !ok {
		return lt, logoutErr("logout_token events lacks %s as a JSON object", BackchannelLogoutEvent)
	}
	lt.sub, lt.sid = stringClaim(claims, "sub"), stringClaim(claims, "sid")
	if _, present := claims["sub"]; present && lt.sub == "" {
		return lt, logoutErr("logout_token sub must be a non-empty string")
	}
	if _, present := claims["sid"]; present && lt.sid == "" {
		return lt, logoutErr("logout_token sid must be a non-empty string")
	}
	if lt.sub == "" && lt.sid == "" {
		return lt, logoutErr("logout_token has neither sub nor sid")
	}
	return lt, nil
}

// backchannelLogout is POST /backchannel-logout. The signed logout token authenticates
// the IdP. A valid token becomes a cutoff: on sid when the token has one (that session
// ends), else on sub (every session of the user ends), with not_before the next second,
// so that every token of it issued until now is revoked. A jti seen before is refused:
// within this process for as long as the token is acceptable, and across replicas
// within the stream's duplicate window (the event's Nats-Msg-Id is derived from iss and
// jti).
func (s *Server) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	const endpoint = "backchannel_logout"
	if s.keys == nil || len(s.cfg.LogoutAudiences) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "/backchannel-logout is off: start revoked ingest with --jwks-file or --jwks-url and --logout-audience")
		return
	}
	if err := r.ParseForm(); err != nil {
		bodyError(w, err)
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "the logout_token parameter is required (application/x-www-form-urlencoded body)")
		return
	}
	lt, err := s.validateLogoutToken(raw)
	if err != nil {
		s.metrics.rejected.WithLabelValues(endpoint, "invalid_logout_token").Inc()
		s.log.Info("logout token refused", "err", err)
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	key := lt.iss + "\x00" + lt.jti
	until := time.Unix(lt.iat, 0).Add(s.cfg.LogoutMaxAge + 2*s.cfg.Leeway)
	fresh, retry := s.replay.add(key, until, s.now())
	if !fresh {
		s.metrics.rejected.WithLabelValues(endpoint, "replayed").Inc()
		writeError(w, http.StatusBadRequest, "invalid_request", "logout_token replayed (jti seen before)")
		return
	}
	sum := sha256.Sum256([]byte(key))
	ev := event.Event{
		Type: event.TypeCutoff, Claim: "sid", Value: lt.sid, NotBefore: s.now().Unix() + 1,
		Iss: lt.iss, Sub: lt.sub, Reason: "logout", RevokedAt: s.now().Unix(),
		RevokedBy: "backchannel-logout", EventID: "bcl:" + hex.EncodeToString(sum[:16]),
	}
	if lt.sid == "" {
		ev.Claim, ev.Value = "sub", lt.sub
	}
	res, err := s.pub.Publish(r.Context(), ev)
	var evErr *event.Error
	switch {
	case errors.As(err, &evErr):
		s.replay.failed(key)
		s.metrics.rejected.WithLabelValues(endpoint, event.Reason(err)).Inc()
		writeError(w, http.StatusBadRequest, "invalid_request", "logout_token cannot form a revocation: "+evErr.Detail)
		return
	case err != nil:
		s.replay.failed(key) // not acknowledged: the IdP may send it again
		s.unavailable(w, endpoint, err)
		return
	case res.Duplicate && res.Attempts == 1 && !retry:
		// Another replica (or an earlier life of this one) published this logout. (After
		// a retry, or when an earlier request for it here got a 503, the duplicate may
		// be this replica's own attempt that did reach the stream.)
		s.metrics.rejected.WithLabelValues(endpoint, "replayed").Inc()
		writeError(w, http.StatusBadRequest, "invalid_request", "logout_token replayed (jti seen before)")
		return
	}
	s.countPublished(endpoint, res)
	s.log.Info("session logged out", "endpoint", endpoint, "claim", ev.Claim, "iss", lt.iss, "jti_sha256", hashID(lt.jti), "seq", res.Sequence)
	w.WriteHeader(http.StatusOK)
}

// replayCache remembers logout token ids until they could no longer be accepted, and
// which of them were answered 503 (so their retry is not a replay).
type replayCache struct {
	mu   sync.Mutex
	seen map[string]replayEntry
}

type replayEntry struct {
	until  time.Time
	failed bool
}

func newReplayCache() *replayCache { return &replayCache{seen: map[string]replayEntry{}} }

// add records key until. fresh is false when key was accepted before; retry is true
// when an earlier request for it failed to publish.
func (c *replayCache) add(key string, until, now time.Time) (fresh, retry bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[key]; ok && now.Before(e.until) {
		if !e.failed {
			return false, false
		}
		retry = true
	}
	if n := len(c.seen); n >= 1024 && n%1024 == 0 {
		for k, e := range c.seen {
			if !now.Before(e.until) {
				delete(c.seen, k)
			}
		}
	}
	c.seen[key] = replayEntry{until: until}
	return true, retry
}

// failed marks key as not published.
func (c *replayCache) failed(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[key]; ok {
		e.failed = true
		c.seen[key] = e
	}
}

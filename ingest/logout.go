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
	"github.com/revoked-dev/revoked/publish"
)

// BackchannelLogoutEvent is the member a logout token's events claim must hold.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// maxLogoutBody bounds what /backchannel-logout reads: a logout token is about a
// kilobyte (an RSA-4096 signature adds 700 bytes), and any caller may post here.
const maxLogoutBody = 8 << 10

// sourceBackchannelLogout is the source of the events a logout publishes.
const sourceBackchannelLogout = "backchannel-logout"

// logoutToken is what a valid logout token says.
type logoutToken struct {
	iss, sub, sid, jti string
	iat                int64
	clients            []string // the aud values that are --logout-audience: the RPs logging out
}

// errLogout is a logout token refused; its text is the error_description and reason
// the label it is counted under.
type errLogout struct{ msg, reason string }

func (e errLogout) Error() string { return e.msg }

func logoutErr(format string, a ...any) error {
	return errLogout{fmt.Sprintf(format, a...), "invalid_logout_token"}
}

// validateLogoutToken checks raw as OpenID Connect Back-Channel Logout 1.0 section 2.6
// asks: the signature first (keys and algorithms as for an ID token; a kid not known
// yet is refused at once, see keyfuncNoWait), typ when present (logout+jwt, or the
// generic JWT), iss, aud (one of audiences), iat within maxAge (and not in the future),
// exp (unless --logout-allow-missing-exp names the issuer), jti, the events claim with
// the back-channel logout member as a JSON object, sub or sid or both, and no nonce.
func (s *Server) validateLogoutToken(raw string) (logoutToken, error) {
	var lt logoutToken
	p := s.keys.NewParser(
		jwt.WithLeeway(s.cfg.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.now),
	)
	claims := jwt.MapClaims{}
	tok, err := p.ParseWithClaims(raw, claims, s.keyfuncNoWait)
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenMalformed):
			return lt, logoutErr("logout_token is not a JWT")
		case errors.Is(err, errKeyNotYetKnown):
			return lt, errLogout{"logout_token is signed with a key (kid) not known yet; the keys are being fetched again: send it again shortly", "unknown_key"}
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return lt, logoutErr("logout_token signature does not verify")
		case errors.Is(err, jwt.ErrTokenExpired):
			return lt, logoutErr("logout_token expired")
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
	if err == nil {
		for _, a := range aud {
			if slices.Contains(s.cfg.LogoutAudiences, a) && !slices.Contains(lt.clients, a) {
				lt.clients = append(lt.clients, a)
			}
		}
	}
	if len(lt.clients) == 0 {
		return lt, logoutErr("logout_token aud does not name this relying party")
	}
	slices.Sort(lt.clients)
	if lt.iat, err = unixClaim(claims, "iat"); err != nil {
		return lt, logoutErr("logout_token: %v", err)
	}
	if age := s.now().Sub(time.Unix(lt.iat, 0)); age > s.cfg.LogoutMaxAge+s.cfg.Leeway {
		return lt, logoutErr("logout_token issued %s ago, more than %s", age.Round(time.Second), s.cfg.LogoutMaxAge)
	}
	if _, present := claims["exp"]; present || !s.logout.expOptional(lt.iss) {
		if _, err = unixClaim(claims, "exp"); err != nil {
			return lt, logoutErr("logout_token: %v (BCL 1.0 requires exp; --logout-allow-missing-exp accepts its absence for an issuer)", err)
		}
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

// logoutEvents maps a valid logout token to the cutoffs that end its session, as the
// issuer's LogoutMode says. The cutoff time is the token's iat (the moment the IdP
// ended the session, on the clock that stamps its access tokens), bounded by our clock
// and leeway, plus a second so that tokens issued in that second are revoked too. A
// late or replayed logout token thus never revokes the tokens of a later login, and a
// replay publishes the same cutoff again: revocation only grows, and nothing changes.
func (s *Server) logoutEvents(lt logoutToken) ([]event.Event, error) {
	mode := s.logout.mode(lt.iss)
	notBefore := min(lt.iat, s.now().Add(s.cfg.Leeway).Unix()) + 1
	sum := sha256.Sum256([]byte(lt.iss + "\x00" + lt.jti))
	id := "bcl:" + hex.EncodeToString(sum[:16])
	base := event.Event{
		Type: event.TypeCutoff, NotBefore: notBefore, Iss: lt.iss, Sub: lt.sub,
		Reason: "logout", RevokedAt: s.now().Unix(), RevokedBy: "backchannel-logout",
		Source: sourceBackchannelLogout, EventID: id,
	}
	switch {
	case mode == LogoutSID && lt.sid != "":
		ev := base
		ev.Claim, ev.Value = "sid", lt.sid
		return []event.Event{ev}, nil
	case lt.sub == "":
		return nil, errLogout{fmt.Sprintf("logout_token names a session (sid) but no user (sub), and the access tokens of %s carry no sid (--logout-cutoff %s): it cannot revoke them; configure the IdP to send sub, or to put sid in its access tokens (--logout-cutoff sid)", lt.iss, mode), "no_sub"}
	case mode == LogoutUser:
		ev := base
		ev.Claim, ev.Value = "sub", lt.sub
		return []event.Event{ev}, nil
	}
	// The user's tokens at the logging-out client(s) only: one cutoff per client.
	evs := make([]event.Event, 0, len(lt.clients))
	for _, client := range lt.clients {
		ev := base
		ev.Claim, ev.Value, ev.ClientID = "sub", lt.sub, client
		ev.EventID = clientCutoffID(id, client)
		evs = append(evs, ev)
	}
	return evs, nil
}

// clientCutoffID is the event id of a logout's cutoff for one client: derived from the
// client id, not its place in aud, so that every replica and every retry gives that
// cutoff the same id (and the stream's duplicate window catches it) whatever the order
// of aud and whichever of the token's clients a replica's --logout-audience names.
func clientCutoffID(logoutID, client string) string {
	sum := sha256.Sum256([]byte(client))
	return logoutID + ":" + hex.EncodeToString(sum[:8])
}

// backchannelLogout is POST /backchannel-logout. The signed logout token authenticates
// the IdP: the body is bounded to maxLogoutBody and the signature checked before
// anything else (no key fetch waits on an anonymous caller). A valid token becomes the
// cutoffs of logoutEvents, every one of them validated before any is published.
//
// A jti seen before is refused as replayed: within this process for as long as the
// token is acceptable (replayCache), and across replicas by the stream's duplicate
// window: every cutoff's Nats-Msg-Id derives from iss and jti (Config.Validate fits the
// acceptance window into the shortest duplicate window the contract allows), and a
// token is a replay there only when the stream already held EVERY one of its cutoffs.
// A logout answered 503 after some of its cutoffs were stored is thus retried safely at
// any replica: the retry publishes every cutoff again, the stored ones come back as
// duplicates (nothing is doubled), and the missing ones are stored. (At the replica
// that answered 503, replayCache remembers the failure, and the retry is no replay
// even when every cutoff turns out to be stored: its own attempt may have stored them.)
func (s *Server) backchannelLogout(w http.ResponseWriter, r *http.Request) {
	const endpoint = "backchannel_logout"
	if s.keys == nil || len(s.cfg.LogoutAudiences) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "/backchannel-logout is off: start revoked ingest with --jwks-file or --jwks-url and --logout-audience")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutBody)
	if err := r.ParseForm(); err != nil {
		s.metrics.rejected.WithLabelValues(endpoint, "bad_body").Inc()
		bodyError(w, err)
		return
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "the logout_token parameter is required (application/x-www-form-urlencoded body)")
		return
	}
	lt, err := s.validateLogoutToken(raw)
	var evs []event.Event
	if err == nil {
		evs, err = s.logoutEvents(lt)
	}
	if err != nil {
		reason := "invalid_logout_token"
		var le errLogout
		if errors.As(err, &le) {
			reason = le.reason
		}
		s.metrics.rejected.WithLabelValues(endpoint, reason).Inc()
		s.log.Info("logout token refused", "reason", reason, "err", err)
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
	// A cutoff the contract refuses is refused before any other is published: a logout
	// is never half published and then answered 400, which the IdP does not retry.
	for _, ev := range evs {
		if _, err := s.pub.Payload(&ev); err != nil {
			s.replay.failed(key)
			s.publishFailed(w, endpoint, "logout_token", err)
			return
		}
	}
	results := make([]publish.Result, 0, len(evs))
	for _, ev := range evs {
		res, err := s.pub.Publish(r.Context(), ev)
		if err != nil {
			s.replay.failed(key) // not acknowledged: the IdP may send it again
			s.logoutPublished(endpoint, lt, evs, results)
			s.publishFailed(w, endpoint, "logout_token", err)
			return
		}
		results = append(results, res)
	}
	if !retry && !slices.ContainsFunc(results, func(res publish.Result) bool { return !res.Duplicate || res.Attempts != 1 }) {
		// Every cutoff was in the stream before this request: another replica (or an
		// earlier life of this one) published this logout. (A duplicate after a retry of
		// the publish may be this request's own attempt that did reach the stream.)
		s.metrics.rejected.WithLabelValues(endpoint, "replayed").Inc()
		writeError(w, http.StatusBadRequest, "invalid_request", "logout_token replayed (jti seen before)")
		return
	}
	s.logoutPublished(endpoint, lt, evs, results)
	w.WriteHeader(http.StatusOK)
}

// logoutPublished counts and logs the cutoffs of lt the stream acknowledged: results,
// for the first events of evs.
func (s *Server) logoutPublished(endpoint string, lt logoutToken, evs []event.Event, results []publish.Result) {
	for i, res := range results {
		s.countPublished(endpoint, res)
		s.log.Info("session logged out", "endpoint", endpoint, "claim", evs[i].Claim, "client_id", evs[i].ClientID, "iss", lt.iss, "jti_sha256", hashID(lt.jti), "seq", res.Sequence, "duplicate", res.Duplicate)
	}
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

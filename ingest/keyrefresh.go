package ingest

import (
	"context"
	"errors"

	"github.com/golang-jwt/jwt/v5"
)

// errKeyNotYetKnown is a token whose kid the keys do not hold (yet).
var errKeyNotYetKnown = errors.New("kid not known yet")

// keyfuncNoWait is the Keyfunc for tokens any anonymous caller may send: a kid the
// keys do not hold is refused at once instead of waiting on a JWKS fetch (up to
// seconds, and the caller's to trigger). It starts a fetch in the background, one at
// a time, that jwtkeys rate-limits (one per 10 s): after a key rotation, the IdP's
// next attempt finds the new key.
func (s *Server) keyfuncNoWait(t *jwt.Token) (any, error) {
	kid, ok := t.Header["kid"].(string)
	if !ok || s.keys.HasKID(context.Background(), kid) {
		// A token without kid is tried against the keys held; no fetch either.
		return s.keys.Keyfunc(t)
	}
	if s.refreshing.CompareAndSwap(false, true) {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer s.refreshing.Store(false)
			_, _ = s.keys.Keyfunc(t) // fetches the JWKS again, rate-limited
		}()
	}
	return nil, errKeyNotYetKnown
}

package ssf

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/revoked-dev/revoked/jwtkeys"
)

// A SET signed with a key the receiver does not hold yet (the transmitter rotated its
// key, or published it a moment after signing with it) waits for the transmitter's
// keys to be fetched again, at most keyWaitMax, before it is refused: a 400 would make
// a push transmitter drop the revocation (RFC 8935 transmitters do not retry a 400),
// and a poll transmitter record it as refused. The wait is safe to give: a push is
// already authenticated by the transmitter's push authorization, and a poll is the
// receiver's own request. Fetches are limited to one per keyFetchEvery per transmitter,
// shared by the SETs waiting; a kid a full wait did not find waits no more for
// keyMissMemory (one fetch at most, if the limit allows it at once), so that a poll
// batch signed with a bad kid cannot hold the poll loop for minutes.
//
// Only a fetch that succeeded and still lacks the kid makes it invalid_key: when the
// last fetch failed (the transmitter's JWKS endpoint down), the kid may well be
// published there, and the SET is answered as unavailable (503 to a push, left
// unacknowledged in a poll) so that it comes back rather than being dropped.
const (
	keyWaitMax    = 5 * time.Second
	keyFetchEvery = time.Second
	keyMissMemory = time.Minute
	maxKeyMisses  = 64
)

// keyWait lets a transmitter's SETs wait for a key it does not hold yet.
type keyWait struct {
	keys   *jwtkeys.Keys
	limit  *rate.Limiter
	turn   chan struct{} // held by the waiter fetching; the others wait for its result
	mu     sync.Mutex
	misses map[string]time.Time // kids a full wait did not find, and when
	// lastFetch is when the last fetch of ours ended and whether it succeeded.
	lastFetchAt time.Time
	lastFetchOK bool
}

// keyLookup is what a wait for a kid found.
type keyLookup int

const (
	keyHeld        keyLookup = iota // the key is held (or the SET names no kid)
	keyMissing                      // the transmitter's keys, fetched, lack it
	keyUnavailable                  // its keys could not be fetched: it may be there
)

func newKeyWait(keys *jwtkeys.Keys) *keyWait {
	return &keyWait{keys: keys, limit: rate.NewLimiter(rate.Every(keyFetchEvery), 1),
		turn: make(chan struct{}, 1), misses: map[string]time.Time{}}
}

// await reports whether the key kid is held, fetching the keys again until it is or
// keyWaitMax has passed. A SET without kid does not wait (it is tried against the keys
// held, as jwtkeys does). Not found, it is keyMissing only when the last fetch
// succeeded (and, for a patient wait, ended during this wait); otherwise
// keyUnavailable.
func (w *keyWait) await(ctx context.Context, kid string) keyLookup {
	if kid == "" || w.keys.HasKID(ctx, kid) {
		return keyHeld
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, keyWaitMax)
	defer cancel()
	patient := !w.missedRecently(kid)
	for {
		found, more := w.fetchOnce(ctx, kid, patient)
		if found {
			return keyHeld
		}
		if !more || !patient {
			break
		}
	}
	if patient {
		// Remembered whatever the reason, so that the next SETs under this kid (a poll
		// batch) do not each wait in full while the JWKS endpoint is down.
		w.missed(kid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// An impatient lookup may rest on a fetch made just before it (the limit allows one
	// a second); a patient one must have seen a fetch of its own wait succeed.
	if w.lastFetchOK && (!patient || !w.lastFetchAt.Before(start)) {
		return keyMissing
	}
	return keyUnavailable
}

// fetchOnce takes its turn, then fetches the keys once the limit allows (waiting for
// it when patient), unless a fetch made meanwhile found kid. more is false once no
// fetch can come before ctx ends.
func (w *keyWait) fetchOnce(ctx context.Context, kid string, patient bool) (found, more bool) {
	select {
	case w.turn <- struct{}{}:
	case <-ctx.Done():
		return false, false
	}
	defer func() { <-w.turn }()
	if w.keys.HasKID(ctx, kid) {
		return true, true
	}
	if patient {
		// Wait fails at once when the next fetch would come after the deadline.
		if err := w.limit.Wait(ctx); err != nil {
			return false, false
		}
	} else if !w.limit.Allow() {
		return false, false
	}
	// A failed fetch keeps the keys held; the next turn tries again.
	err := w.keys.Refresh(ctx)
	w.mu.Lock()
	w.lastFetchAt, w.lastFetchOK = time.Now(), err == nil
	w.mu.Unlock()
	return w.keys.HasKID(ctx, kid), true
}

func (w *keyWait) missedRecently(kid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.misses[kid]
	return ok && time.Since(at) < keyMissMemory
}

func (w *keyWait) missed(kid string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, at := range w.misses {
		if time.Since(at) >= keyMissMemory {
			delete(w.misses, k)
		}
	}
	if len(w.misses) < maxKeyMisses {
		w.misses[kid] = time.Now()
	}
}

// kidOf reads the kid of a compact JWS header, unverified: only to know whether the
// key it names is held. "" when it has none or the header cannot be read (the
// signature check then refuses it).
func kidOf(raw string) string {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	// By its exact name, as the JWT parser reads it (encoding/json would also take "Kid").
	var h map[string]json.RawMessage
	var kid string
	if json.Unmarshal(b, &h) != nil || json.Unmarshal(h["kid"], &kid) != nil {
		return ""
	}
	return kid
}

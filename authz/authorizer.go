package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash/maphash"
	"log/slog"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/revoked-dev/revoked/blocklist"
)

// Token is a verified token as the decision keeps it: its claims and its blocklist keys,
// computed once. Cached tokens are shared between requests and never modified.
type Token struct {
	Claims
	query   blocklist.Query
	jtiHash string // short SHA-256 of the jti, the only token identifier ever logged
	allow   atomic.Pointer[allowResponse]
}

// JTIHash is a short, non-reversible tag of the token's jti for logs.
func (t *Token) JTIHash() string { return t.jtiHash }

// JTIHash returns the first 12 hex digits of the SHA-256 of jti; logs carry this,
// never the token or the jti itself.
func JTIHash(jti string) string {
	if jti == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(jti))
	return hex.EncodeToString(sum[:6])
}

// Decision is the outcome of one check. Token is set once the token has verified.
type Decision struct {
	Reason Reason
	Token  *Token
}

// Allowed reports whether the request may pass.
func (d Decision) Allowed() bool { return d.Reason == ReasonOK }

// Authorizer decides checks. It is safe for concurrent use.
type Authorizer struct {
	verifier *Verifier
	set      *blocklist.Set
	cache    *lru.Cache[cacheKey, *Token] // nil: every request is verified
	seedHi   maphash.Seed
	seedLo   maphash.Seed
	gate     atomic.Uint32 // a Reason: ReasonOK lets checks through
	metrics  *Metrics
	log      *slog.Logger
}

type cacheKey struct{ hi, lo uint64 }

// Options configure an Authorizer.
type Options struct {
	CacheSize int          // verified tokens kept; 0 turns the cache off
	Metrics   *Metrics     // may be nil
	Log       *slog.Logger // may be nil
}

// NewAuthorizer returns an Authorizer that verifies with v and looks tokens up in set.
// It starts closed (ReasonNotReady) until Open is called.
func NewAuthorizer(v *Verifier, set *blocklist.Set, opts Options) *Authorizer {
	a := &Authorizer{
		verifier: v,
		set:      set,
		seedHi:   maphash.MakeSeed(),
		seedLo:   maphash.MakeSeed(),
		metrics:  opts.Metrics,
		log:      opts.Log,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheSize > 0 {
		a.cache, _ = lru.New[cacheKey, *Token](opts.CacheSize)
	}
	a.gate.Store(uint32(ReasonNotReady))
	return a
}

// SetGate decides what every check answers before looking at the token: ReasonOK lets
// checks through; ReasonNotReady or ReasonStale deny them all (fail closed).
func (a *Authorizer) SetGate(r Reason) { a.gate.Store(uint32(r)) }

// Gate returns the current gate.
func (a *Authorizer) Gate() Reason { return Reason(a.gate.Load()) }

// Check decides a request whose authorization header is header, and records it in the
// metrics. It is what the gRPC and HTTP servers call.
func (a *Authorizer) Check(header string) Decision {
	start := time.Now()
	d := a.Decide(header, start)
	if a.metrics != nil {
		a.metrics.observe(d.Reason, time.Since(start))
	}
	if d.Reason != ReasonOK && a.log.Enabled(context.Background(), slog.LevelDebug) {
		jti := ""
		if d.Token != nil {
			jti = d.Token.jtiHash
		}
		a.log.Debug("check denied", "reason", d.Reason.String(), "jti_hash", jti)
	}
	return d
}

// Decide is the decision itself: gate, token extraction, the verified-token cache or
// a full verification, then the blocklist lookup, which runs on every request.
func (a *Authorizer) Decide(header string, now time.Time) Decision {
	if g := Reason(a.gate.Load()); g != ReasonOK {
		return Decision{Reason: g}
	}
	raw, r := BearerToken(header)
	if r != ReasonOK {
		return Decision{Reason: r}
	}
	tok, r := a.verified(raw, now)
	if r != ReasonOK {
		return Decision{Reason: r}
	}
	switch a.set.Check(&tok.query) {
	case blocklist.RevokedJTI:
		return Decision{Reason: ReasonRevokedJTI, Token: tok}
	case blocklist.RevokedCutoff:
		return Decision{Reason: ReasonRevokedCutoff, Token: tok}
	}
	return Decision{Reason: ReasonOK, Token: tok}
}

// verified returns the token from the cache, or verifies it and caches it. The cache is
// keyed by a 128-bit keyed hash of the whole token string (the same argument as the
// blocklist's: no collision can be aimed at without the seed), and an entry is never
// used past the token's exp.
func (a *Authorizer) verified(raw string, now time.Time) (*Token, Reason) {
	var key cacheKey
	if a.cache != nil {
		key = cacheKey{maphash.String(a.seedHi, raw), maphash.String(a.seedLo, raw)}
		if tok, ok := a.cache.Get(key); ok {
			if now.Unix() > tok.Expiry+int64(a.verifier.cfg.Leeway/time.Second) {
				a.cache.Remove(key)
				return nil, ReasonExpired
			}
			return tok, ReasonOK
		}
	}
	c, r := a.verifier.Verify(raw, now)
	if r != ReasonOK {
		return nil, r
	}
	tok := &Token{Claims: *c, jtiHash: JTIHash(c.JTI)}
	tok.query = a.set.NewQuery(c.Issuer, c.JTI, c.IssuedAt, c.Cutoff)
	tok.Cutoff = nil // now in the query's keys; a cached token keeps only what it needs
	if a.cache != nil {
		a.cache.Add(key, tok)
	}
	return tok, ReasonOK
}

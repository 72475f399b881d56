package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/revoked-dev/revoked/blocklist"
)

// Token is a verified token as the decision keeps it: only what decisions, logs and
// responses read (the sub, exp, the blocklist keys computed once, the jti's hash), since
// the token cache holds one per cached token. Cached tokens are shared between requests
// and never modified.
type Token struct {
	Subject  string // sub ("" when absent): sent upstream in the subject header
	Expiry   int64  // exp, Unix seconds
	query    blocklist.Query
	keyGen   uint64   // Keys.Generation the signature was verified under
	jtiHash  jtiTag   // rendered as hex only when logged or put in a response
	rendered rendered // its allow response, as each transport built it
}

// jtiTag is the first bytes of the SHA-256 of a jti; ok is false for a token without jti.
type jtiTag struct {
	sum [jtiTagBytes]byte
	ok  bool
}

const jtiTagBytes = 6

func jtiTagOf(jti string) jtiTag {
	if jti == "" {
		return jtiTag{}
	}
	sum := sha256.Sum256([]byte(jti))
	return jtiTag{sum: [jtiTagBytes]byte(sum[:jtiTagBytes]), ok: true}
}

func (t jtiTag) String() string {
	if !t.ok {
		return ""
	}
	return hex.EncodeToString(t.sum[:])
}

// JTIHash is a short, non-reversible tag of the token's jti for logs ("" without jti).
func (t *Token) JTIHash() string { return t.jtiHash.String() }

// JTIHash returns the first 12 hex digits of the SHA-256 of jti; logs carry this,
// never the token or the jti itself.
func JTIHash(jti string) string { return jtiTagOf(jti).String() }

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
	cache    *lru.Cache[tokenDigest, *Token] // by the token's SHA-256; nil: every request is verified
	gate     atomic.Uint32                   // a Reason: ReasonOK lets checks through
	metrics  *Metrics
	log      *slog.Logger
}

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
		metrics:  opts.Metrics,
		log:      opts.Log,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if opts.CacheSize > 0 {
		a.cache, _ = lru.New[tokenDigest, *Token](opts.CacheSize)
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
func (a *Authorizer) Check(header string) Decision { return a.CheckHeaders(header, 1) }

// CheckHeaders is Check for a request that carried n authorization headers, header
// being the one when n is 1. Two or more are refused as malformed whatever they hold
// (an empty one beside a token included), as two tokens in one header are: every form
// of request (gRPC map, gRPC header_map, HTTP) answers alike.
func (a *Authorizer) CheckHeaders(header string, n int) Decision {
	start := time.Now()
	var d Decision
	if n > 1 {
		d = a.refuse(ReasonMalformed)
	} else {
		d = a.Decide(header, start)
	}
	if a.metrics != nil {
		a.metrics.observe(d.Reason, time.Since(start))
	}
	if d.Reason != ReasonOK && a.log.Enabled(context.Background(), slog.LevelDebug) {
		jti := ""
		if d.Token != nil {
			jti = d.Token.JTIHash()
		}
		a.log.Debug("check denied", "reason", d.Reason.String(), "jti_hash", jti)
	}
	return d
}

// refuse is the decision for a request refused before its token is read; the gate
// still comes first, as in Decide.
func (a *Authorizer) refuse(r Reason) Decision {
	if g := Reason(a.gate.Load()); g != ReasonOK {
		return Decision{Reason: g}
	}
	return Decision{Reason: r}
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

// tokenDigest is the SHA-256 of a whole token string, the token cache's key. A hit
// stands for the very token verified: a different token with the same digest is a
// SHA-256 collision, which nobody can make (a non-cryptographic hash could be made to
// collide, and let a forged token take a cached one's decision while its own claims
// went upstream). Keeping the digest instead of the token saves the token's length
// per entry (about 0.4 – 1 KB) for one SHA-256 per check (BENCHMARKS.md).
type tokenDigest [sha256.Size]byte

// digestOf hashes raw in place: Sum256 only reads its argument, so the string's bytes
// need no copy (a copy would be an allocation per check).
func digestOf(raw string) tokenDigest {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// verified returns the token from the cache, or verifies it and caches it. The cache
// is keyed by the token's SHA-256 (tokenDigest), and an entry is used only before the
// token's exp and while the key set has not lost a key since it was verified (a
// removed key stops its tokens at once).
func (a *Authorizer) verified(raw string, now time.Time) (*Token, Reason) {
	gen := a.verifier.keys.Generation() // read before verifying: see keyStore.changed
	var key tokenDigest
	if a.cache != nil {
		key = digestOf(raw)
		if tok, ok := a.cache.Get(key); ok {
			if tok.keyGen != gen {
				a.cache.Remove(key) // verified under keys since removed or changed: again
			} else {
				if now.Unix() > tok.Expiry+int64(a.verifier.cfg.Leeway/time.Second) {
					a.cache.Remove(key)
					return nil, ReasonExpired
				}
				return tok, ReasonOK
			}
		}
	}
	c, r := a.verifier.Verify(raw, now)
	if r != ReasonOK {
		return nil, r
	}
	// A claim without value matches no cutoff: left out, the query's keys are sized
	// for the claims the token has (NewQuery reserves room by the claims passed).
	c.Cutoff = slices.DeleteFunc(c.Cutoff, func(cl blocklist.Claim) bool { return cl.Value == "" })
	tok := &Token{Subject: c.Subject, Expiry: c.Expiry, keyGen: gen, jtiHash: jtiTagOf(c.JTI)}
	tok.query = a.set.NewQuery(c.Issuer, c.JTI, c.IssuedAt, c.Cutoff, c.ClientID, c.Azp)
	if a.cache != nil {
		a.cache.Add(key, tok)
	}
	return tok, ReasonOK
}

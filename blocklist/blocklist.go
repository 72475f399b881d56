// Package blocklist is the replica's in-memory revocation list: the set of revoked token
// ids and the per-key cutoffs of CONTRACT section 2. It does no I/O and takes the clock
// as an argument, so it is deterministic under test.
//
// Entries store only what a decision needs: a 128-bit keyed hash of the identifying
// strings and a 32-bit unix time. A false match needs two different keys to collide in
// 128 bits under a per-process random seed: with 1e6 entries and 2e8 live tokens the
// chance is about 1e6*2e8/2^128 ≈ 6e-25, and an attacker cannot aim at a collision
// without the seed, which never leaves the process.
//
// Readers take a shard's read lock for one table lookup; the writer takes a shard's write
// lock for one insert, or for purging that one shard. A reader never waits behind more
// than one small step of the writer.
package blocklist

import (
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies an entry: a 128-bit keyed hash. Build keys with Set.JTIKey and
// Set.CutoffKey; keys of one Set mean nothing to another.
type Key struct{ hi, lo uint64 }

const numShards = 256

// Set is the blocklist. The zero value is not usable; call New.
type Set struct {
	seedHi, seedLo maphash.Seed
	jti            table // key: (iss, jti); value: the token's exp
	cutoff         table // key: (iss, claim, value, client_id); value: the greatest not_before seen
}

// New returns an empty Set with fresh random seeds.
func New() *Set {
	s := &Set{seedHi: maphash.MakeSeed(), seedLo: maphash.MakeSeed()}
	s.jti.initMemory(s)
	s.cutoff.initMemory(s)
	return s
}

// scopeBit, the lowest bit of a key's hi half, marks the key of a client-scoped cutoff;
// every other key has it clear. The two bits above it hold the class of the scoped
// cutoff's claim (claimClass). The cutoff table counts scoped keys per class, so that
// Check skips a token's client-scoped lookups of every claim no such cutoff names:
// all of them while there is none, all but sub's when logouts scope cutoffs on sub.
const (
	scopeBit   = 1
	classShift = 1
	scopeBits  = scopeBit | 3<<classShift
)

// claimClass sorts claims for the count of scoped cutoffs: the built-in claims of
// CONTRACT section 2 one class each, every other claim the last.
func claimClass(claim string) uint64 {
	switch claim {
	case "sub":
		return 0
	case "sid":
		return 1
	case "client_id":
		return 2
	}
	return 3
}

func scopedClass(k Key) uint64 { return k.hi >> classShift & 3 }

// JTIKey is the key of token id jti of issuer iss. An empty iss is the key of an event
// that applies to every issuer.
func (s *Set) JTIKey(iss, jti string) Key {
	return s.key('j', iss, "", jti, "")
}

// CutoffKey is the key of a cutoff on claim = value for issuer iss (empty: every issuer),
// for the tokens of every client.
func (s *Set) CutoffKey(iss, claim, value string) Key {
	return s.key('c', iss, claim, value, "")
}

// ClientCutoffKey is the key of a cutoff on claim = value for issuer iss that applies
// only to the tokens of client clientID (their client_id or azp). An empty clientID is
// CutoffKey's key: every client.
func (s *Set) ClientCutoffKey(iss, claim, value, clientID string) Key {
	if clientID == "" {
		return s.CutoffKey(iss, claim, value)
	}
	k := s.key('s', iss, claim, value, clientID)
	k.hi = k.hi&^scopeBits | scopeBit | claimClass(claim)<<classShift
	return k
}

func (s *Set) key(kind byte, a, b, c, d string) Key {
	return Key{hash(s.seedHi, kind, a, b, c, d) &^ scopeBit, hash(s.seedLo, kind, a, b, c, d)}
}

// hash writes each string after its length, so that ("ab","c") and ("a","bc") differ.
func hash(seed maphash.Seed, kind byte, a, b, c, d string) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteByte(kind)
	writeString(&h, a)
	writeString(&h, b)
	writeString(&h, c)
	writeString(&h, d)
	return h.Sum64()
}

func writeString(h *maphash.Hash, s string) {
	n := len(s)
	h.WriteByte(byte(n))
	h.WriteByte(byte(n >> 8))
	h.WriteString(s)
}

// AddJTI records that the token with key k, expiring at exp, is revoked. It reports
// whether the set grew.
func (s *Set) AddJTI(k Key, exp int64) bool { return s.jti.raise(k, clamp(exp)) }

// AddCutoff records that tokens matching k and issued before notBefore are revoked. The
// set keeps the greatest notBefore per key; it reports whether the entry is new.
func (s *Set) AddCutoff(k Key, notBefore int64) bool { return s.cutoff.raise(k, clamp(notBefore)) }

// HasJTI reports whether the token id with key k is revoked.
func (s *Set) HasJTI(k Key) bool {
	_, ok := s.jti.get(k)
	return ok
}

// Cutoff returns the not_before of the cutoff with key k, if there is one.
func (s *Set) Cutoff(k Key) (notBefore int64, ok bool) {
	v, ok := s.cutoff.get(k)
	return int64(v), ok
}

// Len returns the number of jti entries and of cutoffs (client-scoped ones included).
func (s *Set) Len() (jti, cutoff int) {
	return int(s.jti.count.Load()), int(s.cutoff.count.Load())
}

// SlotBytes is the memory the set's tables take: outside the Go heap, so the runtime's
// memory statistics do not include it.
func (s *Set) SlotBytes() int64 { return s.jti.mem.bytes.Load() + s.cutoff.mem.bytes.Load() }

// Retention is how long an entry can still match a token the verifier accepts: a jti
// entry until the token's exp plus the leeway; a cutoff until its not_before plus the
// longest token lifetime plus the leeway (a token issued before not_before has expired
// by then). It is the one rule for what stays live: the replica skips events already
// past it, Purge removes entries once past it, and a jti entry's exp is bounded by it.
type Retention struct {
	Lifetime time.Duration // the longest token lifetime (exp - iat) the verifier accepts
	Leeway   time.Duration // how long past exp a token is still accepted
}

func (r Retention) lifetime() int64 { return int64(r.Lifetime / time.Second) }
func (r Retention) leeway() int64   { return int64(r.Leeway / time.Second) }

// JTILive reports whether a jti entry for a token expiring at exp can match at now.
func (r Retention) JTILive(exp, now int64) bool { return exp >= now-r.leeway() }

// CutoffLive reports whether a cutoff with notBefore can match a live token at now.
func (r Retention) CutoffLive(notBefore, now int64) bool {
	return notBefore >= now-r.leeway()-r.lifetime()
}

// MaxExp is the latest exp a token accepted at now can carry: issued at most the leeway
// ahead of now, living at most the lifetime.
func (r Retention) MaxExp(now int64) int64 { return now + r.lifetime() + r.leeway() }

// Purge removes the entries that can no longer match a live token at now (see
// Retention). It works one shard at a time, so readers are held up by one shard's scan
// at most. It returns how many entries left.
func (s *Set) Purge(now int64, r Retention) (jti, cutoff int) {
	return s.jti.purge(now - r.leeway()), s.cutoff.purge(now - r.leeway() - r.lifetime())
}

func clamp(t int64) uint32 {
	switch {
	case t < 0:
		return 0
	case t > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(t)
}

type table struct {
	count  atomic.Int64
	scoped [4]atomic.Int64 // entries whose key carries scopeBit, by claim class
	shards [numShards]shard
	mem    *tableMemory // the shards' slots, outside the Go heap (slots.go)
}

// shard is an open-addressing hash table with linear probing, its keys and values in
// two parallel arrays: 20 bytes a slot, where a Go map spends about 56 bytes an entry
// at this size. The table grows by half when it is 80% full, so it is never less than
// 53% full once grown: at most 20/0.53 ≈ 38 bytes an entry, 30 on average. The zero
// Key marks an empty slot (a key that hashes to zero is stored as {0, 1}). The arrays
// live in one region of memory outside the Go heap (slots.go), used only under mu.
type shard struct {
	mu    sync.RWMutex
	keys  []Key
	vals  []uint32
	n     int           // entries stored
	mem   *[]byte       // the region keys and vals are in: its entry in tableMemory
	bytes *atomic.Int64 // the table's slot bytes
}

const (
	minSlots = 8
	maxLoad  = 0.8
)

func (t *table) shard(k Key) *shard { return &t.shards[k.lo%numShards] }

// slot maps k to its home slot in [0, n): the high bits of hi*n (Lemire's reduction),
// so any size works, not only powers of two. lo already chose the shard.
func slot(k Key, n int) int {
	h, _ := bits.Mul64(k.hi, uint64(n))
	return int(h)
}

func fix(k Key) Key {
	if k == (Key{}) {
		k.lo = 1
	}
	return k
}

// find returns k's slot, or the empty slot where k would go, and whether k is there.
func (sh *shard) find(k Key) (int, bool) {
	n := len(sh.keys)
	if n == 0 {
		return -1, false
	}
	for i := slot(k, n); ; {
		switch sh.keys[i] {
		case k:
			return i, true
		case Key{}:
			return i, false
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (t *table) get(k Key) (uint32, bool) {
	k = fix(k)
	sh := t.shard(k)
	sh.mu.RLock()
	i, ok := sh.find(k)
	var v uint32
	if ok {
		v = sh.vals[i]
	}
	sh.mu.RUnlock()
	return v, ok
}

// raise stores v under k unless a greater value is there; it reports whether k is new.
func (t *table) raise(k Key, v uint32) bool {
	k = fix(k)
	sh := t.shard(k)
	sh.mu.Lock()
	i, ok := sh.find(k)
	switch {
	case ok:
		if v > sh.vals[i] {
			sh.vals[i] = v
		}
	default:
		if float64(sh.n+1) > maxLoad*float64(len(sh.keys)) {
			sh.resize(max(minSlots, len(sh.keys)+len(sh.keys)/2))
			i, _ = sh.find(k)
		}
		sh.keys[i], sh.vals[i] = k, v
		sh.n++
	}
	sh.mu.Unlock()
	if !ok {
		t.count.Add(1)
		if k.hi&scopeBit != 0 {
			t.scoped[scopedClass(k)].Add(1)
		}
	}
	return !ok
}

// resize rehashes the shard into size slots (none when size is 0 and the shard is
// empty), dropping nothing.
func (sh *shard) resize(size int) {
	keys, vals, region := sh.swapSlots(size)
	for j, k := range keys {
		if k == (Key{}) {
			continue
		}
		i, _ := sh.find(k)
		sh.keys[i], sh.vals[i] = k, vals[j]
	}
	sh.release(len(keys), region)
}

// purge deletes the entries whose value is below before. Each shard that loses entries
// is rebuilt (sized for what is left) under its own lock, one shard at a time.
func (t *table) purge(before int64) int {
	if before <= 0 {
		return 0
	}
	limit := clamp(before)
	removed, removedScoped := 0, [4]int64{}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		gone := 0
		for j, k := range sh.keys {
			if k != (Key{}) && sh.vals[j] < limit {
				sh.keys[j] = Key{}
				gone++
				if k.hi&scopeBit != 0 {
					removedScoped[scopedClass(k)]++
				}
			}
		}
		if gone > 0 {
			// Emptied slots break probe chains: rehash what is left.
			sh.n -= gone
			size := 0
			if sh.n > 0 {
				size = minSlots
				for float64(sh.n) > maxLoad*float64(size) {
					size += size / 2
				}
			}
			sh.resize(size)
			removed += gone
		}
		sh.mu.Unlock()
	}
	t.count.Add(-int64(removed))
	for c, n := range removedScoped {
		t.scoped[c].Add(-n)
	}
	return removed
}

// Claim is one claim value a cutoff may match, such as ("sub", "user-42").
type Claim struct{ Name, Value string }

// Query holds the keys of one token, computed once (on first sight of the token) so
// that the check run on every request only looks them up.
type Query struct {
	jti []Key // (iss, jti) and ("", jti); empty for a token without jti
	// cutoffs holds, per claim, (iss, claim, value) and ("", claim, value) for every
	// client; from index scoped on, the same keys scoped to each of the token's clients.
	cutoffs []Key
	scoped  int
	iat     int64 // 0 when the token has none
}

// NewQuery returns the keys of a token of issuer iss with the given jti (may be empty),
// issued-at time (0 if absent) and claims. clients are the token's client_id and azp
// (empty ones and repeats are ignored): a client-scoped cutoff matches the token when
// its client is one of them.
func (s *Set) NewQuery(iss, jti string, iat int64, claims []Claim, clients ...string) Query {
	q := Query{iat: iat}
	if jti != "" {
		q.jti = []Key{s.JTIKey(iss, jti), s.JTIKey("", jti)}
	}
	n := 0
	for i, c := range clients {
		if c != "" && !slices.Contains(clients[:i], c) {
			n++
		}
	}
	q.cutoffs = make([]Key, 0, 2*len(claims)*(1+n))
	for _, c := range claims {
		if c.Value != "" {
			q.cutoffs = append(q.cutoffs, s.CutoffKey(iss, c.Name, c.Value), s.CutoffKey("", c.Name, c.Value))
		}
	}
	q.scoped = len(q.cutoffs)
	for i, client := range clients {
		if client == "" || slices.Contains(clients[:i], client) {
			continue
		}
		for _, c := range claims {
			if c.Value != "" {
				q.cutoffs = append(q.cutoffs, s.ClientCutoffKey(iss, c.Name, c.Value, client), s.ClientCutoffKey("", c.Name, c.Value, client))
			}
		}
	}
	return q
}

// Verdict says whether, and how, a token is revoked.
type Verdict uint8

// Verdicts.
const (
	NotRevoked Verdict = iota
	RevokedJTI
	RevokedCutoff
)

// Check looks the token up: revoked by id, or by a cutoff (for every client, or scoped
// to one of the token's) whose not_before is after the token's iat (a token without iat
// is revoked by any cutoff that matches it).
func (s *Set) Check(q *Query) Verdict {
	for _, k := range q.jti {
		if s.HasJTI(k) {
			return RevokedJTI
		}
	}
	keys := q.cutoffs
	if len(keys) == 0 || s.cutoff.count.Load() == 0 {
		return NotRevoked
	}
	for _, k := range keys[:q.scoped] {
		if nb, ok := s.Cutoff(k); ok && (q.iat == 0 || q.iat < nb) {
			return RevokedCutoff
		}
	}
	for _, k := range keys[q.scoped:] {
		if s.cutoff.scoped[scopedClass(k)].Load() == 0 {
			continue // no client-scoped cutoff on this claim anywhere
		}
		if nb, ok := s.Cutoff(k); ok && (q.iat == 0 || q.iat < nb) {
			return RevokedCutoff
		}
	}
	return NotRevoked
}

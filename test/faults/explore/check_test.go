package explore

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Violation kinds.
const (
	vRevokedAllowed = "revoked-allowed"     // a ready, current replica allowed a token the model says is revoked
	vLongLived      = "long-lived-allowed"  // ... such a token, living longer than the window (exp - iat > lifetime: the contract refuses it)
	vRemovedKey     = "removed-key-allowed" // ... allowed a token whose key it no longer has
	vValidDenied    = "valid-denied"        // ... denied a valid token nothing revokes
	vLiveness       = "liveness"            // a replica not ready, or stale, long after every fault healed
	vHarness        = "harness"             // the explorer itself failed
)

type violation struct {
	kind    string
	replica int
	token   *token
	op      int // index of the operation after which it was seen; -1: the final phase
	detail  string
}

func (v *violation) String() string {
	s := fmt.Sprintf("%s on replica %d", v.kind, v.replica)
	if v.op >= 0 {
		s += fmt.Sprintf(" after op #%d", v.op)
	} else {
		s += " in the final phase (every fault healed)"
	}
	if v.token != nil {
		t := v.token
		s += fmt.Sprintf("; token #%d (jti %s sub %s sid %s client_id %s iat %d exp %d shape %s kid %s)",
			t.n, t.jti, t.sub, t.sid, t.client, t.iat, t.exp, shapeNames[t.shape], t.key.iss.KID)
	}
	return s + ": " + v.detail
}

var shapeNames = [...]string{shapeNormal: "normal", shapeWindow: "window", shapeLongLived: "long-lived", shapeNoIAT: "no-iat", shapeFutureIAT: "future-iat"}

func (w *world) fail(kind string, rep int, tok *token, detail string) {
	if w.viol != nil {
		return
	}
	v := &violation{kind: kind, replica: rep, token: tok, op: w.opIndex, detail: detail}
	if ignored[kind] {
		// EXPLORE_IGNORE: counted and shown once per run and kind, and the run goes on.
		if !w.ignoredSeen[kind] {
			w.ignoredSeen[kind] = true
			w.tb.Logf("ignored (EXPLORE_IGNORE) %s", v)
		}
		w.stats.count("ignored:" + kind)
		return
	}
	w.viol = v
}

// ignored holds the violation kinds of EXPLORE_IGNORE.
var ignored = map[string]bool{}

// stats are a run's figures.
type stats struct {
	mu        sync.Mutex
	counts    map[string]int
	checks    int // decisions compared with the model
	mustDeny  int // of which the model required a deny
	mustAllow int // of which the model required an allow
	liveness  int // liveness evaluations of a replica that had to be ready
	runs      int
	ops       int
}

func newStats() *stats { return &stats{counts: map[string]int{}} }

func (s *stats) count(what string) {
	s.mu.Lock()
	s.counts[what]++
	s.mu.Unlock()
}

func (s *stats) add(o *stats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range o.counts {
		s.counts[k] += v
	}
	s.checks += o.checks
	s.mustDeny += o.mustDeny
	s.mustAllow += o.mustAllow
	s.liveness += o.liveness
	s.runs += o.runs
	s.ops += o.ops
}

func (s *stats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kinds, other []string
	covered := 0
	for k := Kind(0); k < numKinds; k++ {
		n := s.counts["op:"+k.String()]
		if n > 0 {
			covered++
		}
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	for k, v := range s.counts {
		if !strings.HasPrefix(k, "op:") {
			other = append(other, fmt.Sprintf("%s=%d", k, v))
		}
	}
	sort.Strings(other)
	return fmt.Sprintf("runs=%d ops=%d op-kinds=%d/%d checks=%d (must-deny %d, must-allow %d) liveness-checks=%d\n  per kind: %s\n  events: %s",
		s.runs, s.ops, covered, numKinds, s.checks, s.mustDeny, s.mustAllow, s.liveness,
		strings.Join(kinds, " "), strings.Join(other, " "))
}

// revocation is what the model says of tok at now: revoked by an acknowledged event
// (and since when), or perhaps revoked (an unacknowledged, deleted or refusable event).
func (w *world) revocation(tok *token, now time.Time) (definite bool, since time.Time, maybe bool) {
	for _, e := range w.events {
		if e.attempts == 0 || e.typ == "bad" {
			continue
		}
		if e.iss != "" && e.iss != issuer {
			continue
		}
		match := false
		certain := true
		switch e.typ {
		case "jti":
			match = e.jti == tok.jti
		case "cutoff":
			v := map[string]string{"sub": tok.sub, "sid": tok.sid, "client_id": tok.client}[e.claim]
			if v != e.value || e.client != "" && e.client != tok.client {
				break
			}
			if tok.iat == 0 {
				// The contract revokes a token without iat too; the cutoff may be
				// purged once not_before + the lifetime has passed.
				match = true
				certain = now.Before(time.Unix(e.nb, 0).Add(lifetime))
			} else {
				match = tok.iat < e.nb
				certain = tok.iat < e.nbSure
			}
		}
		if !match {
			continue
		}
		if e.definite() && certain {
			if !definite || e.ackedAt.Before(since) {
				since = e.ackedAt
			}
			definite = true
		} else {
			maybe = true
		}
	}
	return definite, since, maybe
}

func later(ts ...time.Time) time.Time {
	var t time.Time
	for _, x := range ts {
		if x.After(t) {
			t = x
		}
	}
	return t
}

// checkReplica compares r's decisions on the live tokens with the model. It reports
// whether some disagreement is still within its grace period (so another look is due).
func (w *world) checkReplica(r *replica, sample []*token, now time.Time) (pending bool) {
	if !r.fresh(now) {
		return false
	}
	lastUnfresh := time.Unix(0, r.lastUnfresh.Load())
	nowR := r.clock() // the replica's time: ahead of now after OpClock
	for _, tok := range sample {
		if !nowR.Before(time.Unix(tok.exp, 0).Add(-300 * time.Millisecond)) {
			continue // expired, or about to
		}
		definite, since, maybe := w.revocation(tok, nowR)
		ks := r.keyState(tok.key, now)
		d := r.az.Decide("Bearer "+tok.raw, nowR)
		w.stats.mu.Lock()
		w.stats.checks++
		w.stats.mu.Unlock()
		key := [2]int{r.idx, tok.n}
		switch {
		case definite:
			w.stats.mu.Lock()
			w.stats.mustDeny++
			w.stats.mu.Unlock()
			if d.Allowed() {
				if age := now.Sub(later(since, lastUnfresh)); age >= propagation {
					kind := vRevokedAllowed
					if tok.shape == shapeLongLived {
						kind = vLongLived
					}
					w.fail(kind, r.idx, tok, fmt.Sprintf(
						"allowed %v after the revocation was acknowledged (%v after the replica was last not ready/current); replica: %s; matching events: %s",
						now.Sub(since).Round(time.Millisecond), age.Round(time.Millisecond), r.describe(now), w.matching(tok)))
					return false
				}
				pending = true
			}
		case ks == -1:
			w.stats.mu.Lock()
			w.stats.mustDeny++
			w.stats.mu.Unlock()
			if d.Allowed() {
				if now.Sub(lastUnfresh) >= time.Second {
					w.fail(vRemovedKey, r.idx, tok, fmt.Sprintf("allowed although its key left the JWKS the replica loaded (keys kind %d); replica: %s", r.keysKind, r.describe(now)))
					return false
				}
				pending = true
			}
		case !maybe && ks == 1 && (tok.shape == shapeNormal || tok.shape == shapeWindow) &&
			nowR.Unix() > tok.iat && nowR.Before(time.Unix(tok.exp, 0).Add(-time.Second)) && now.Sub(lastUnfresh) >= time.Second:
			w.stats.mu.Lock()
			w.stats.mustAllow++
			w.stats.mu.Unlock()
			if d.Allowed() {
				delete(w.denied, key)
				continue
			}
			first, ok := w.denied[key]
			if !ok {
				w.denied[key] = now
				first = now
			}
			if now.Sub(first) >= 2*time.Second {
				w.fail(vValidDenied, r.idx, tok, fmt.Sprintf("denied (%s) for %v although valid and not revoked; replica: %s",
					d.Reason, now.Sub(first).Round(time.Millisecond), r.describe(now)))
				return false
			}
			pending = true
		}
	}
	return pending
}

// liveness: a replica with no fault for healthyFor must be ready and current.
func (w *world) liveness(r *replica, now time.Time) {
	healthySince := later(w.lastDisruption, r.startedAt, r.partEnd, w.outageEnd)
	if !w.natsUp || w.streamGone || r.partitioned || w.outage.Load() || now.Sub(healthySince) < healthyFor {
		delete(w.unlive, r.idx)
		return
	}
	w.stats.mu.Lock()
	w.stats.liveness++
	w.stats.mu.Unlock()
	if r.fresh(now) {
		delete(w.unlive, r.idx)
		return
	}
	first, ok := w.unlive[r.idx]
	if !ok {
		w.unlive[r.idx] = now
		return
	}
	if now.Sub(first) >= time.Second {
		w.fail(vLiveness, r.idx, nil, fmt.Sprintf("not ready or stale %v after the last fault healed; replica: %s",
			now.Sub(healthySince).Round(time.Millisecond), r.describe(now)))
	}
}

func (r *replica) describe(now time.Time) string {
	if r.startErr != nil {
		return "not started: " + r.startErr.Error()
	}
	gate := r.az.Gate()
	return fmt.Sprintf("gate=%s ready=%v (%s) keys-loaded=%v connected=%v staleness=%v last-seq=%d snapshot=%v keys-kind=%d up-for=%v clock-skew=%v",
		gate, r.rep.Ready(), notReadyReason(r.rep), r.keys.Loaded(r.ctx), r.rep.Connected(), r.rep.Staleness(r.clock()).Round(time.Millisecond),
		r.rep.LastSequence(), r.snapshot, r.keysKind, now.Sub(r.startedAt).Round(time.Millisecond), time.Duration(r.skew.Load()))
}

// matching lists the events that match tok, for the report.
func (w *world) matching(tok *token) string {
	var s []string
	for _, e := range w.events {
		if e.typ == "jti" && e.jti == tok.jti || e.typ == "cutoff" && e.value == map[string]string{"sub": tok.sub, "sid": tok.sid, "client_id": tok.client}[e.claim] && (e.client == "" || e.client == tok.client) {
			s = append(s, fmt.Sprintf("#%d %s acked=%v gone=%v maybe=%v seq=%d inc=%d/%d iss=%q nb=%d exp=%d",
				e.n, e.payload, e.acked, e.gone, e.maybe, e.seq, e.inc, w.inc, e.iss, e.nb, e.exp))
		}
	}
	return strings.Join(s, "; ")
}

// live returns the tokens worth checking now (not expired), at most 40.
func (w *world) live(now time.Time) []*token {
	var out []*token
	for _, t := range w.tokens {
		if now.Before(time.Unix(t.exp, 0)) {
			out = append(out, t)
		}
	}
	if len(out) > 40 {
		w.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:40]
	}
	return out
}

// check runs check rounds until every replica agrees with the model, a violation is
// found, or the grace periods have run out.
func (w *world) check() {
	deadline := time.Now().Add(propagation + 500*time.Millisecond)
	for {
		pending := w.checkOnce()
		if w.viol != nil || !pending || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) checkOnce() bool {
	now := time.Now()
	sample := w.live(now)
	pending := false
	for _, r := range w.reps {
		if w.checkReplica(r, sample, now) {
			pending = true
		}
		w.liveness(r, time.Now())
		if w.viol != nil {
			return false
		}
	}
	return pending
}

// sleepChecking lets time pass, looking at the replicas every 250 ms.
func (w *world) sleepChecking(d time.Duration) {
	end := time.Now().Add(d)
	for w.viol == nil {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		time.Sleep(min(left, 250*time.Millisecond))
		w.checkOnce()
	}
}

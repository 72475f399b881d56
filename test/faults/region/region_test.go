package region

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/revoked-dev/revoked/authz"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// The promise across regions: a revocation acknowledged by the hub's stream is
// enforced by the region's sidecars; cut off from the hub, the region keeps enforcing
// what it has and its sidecars say they are stale (a sidecar with --stale-policy deny
// says not ready); a sidecar started during the cut replays what the mirror has; once
// the link is back, what the hub acknowledged during the cut arrives, nothing lost.
func TestRegionFollowsTheHub(t *testing.T) {
	f := newFleet(t)
	f.waitMirrored(t, f.revoke(t, "before").Sequence)
	a := f.startSidecar(t)
	testsupport.Until(t, 10*time.Second, "the region's sidecar ready", func() bool { return a.s.Ready() })
	if !a.denies(f.token("before")) {
		t.Fatal("a revocation the hub held before the sidecar started is not enforced in the region")
	}
	if c := a.check(f.token("live")); c != code.Code_OK {
		t.Fatalf("a fresh token: %v", c)
	}
	f.revoke(t, "live")
	testsupport.Until(t, 5*time.Second, "the hub's live revocation enforced in the region", func() bool { return a.denies(f.token("live")) })
	if s := a.staleness(); s != 0 {
		t.Fatalf("staleness %v while the mirror follows the hub", s)
	}

	// The region is cut off from the hub. The hub goes on acknowledging revocations.
	f.Link.Partition()
	cutAt := time.Now()
	var during []string
	for i := range 5 {
		during = append(during, fmt.Sprint("during-", i))
		f.revoke(t, during[i])
	}
	for _, jti := range []string{"before", "live"} {
		if !a.denies(f.token(jti)) {
			t.Fatalf("cut off, the region no longer enforces %s", jti)
		}
	}
	testsupport.Until(t, stream.MirrorSilence+5*time.Second, "the region's sidecar stale", func() bool { return a.staleness() > 0 })
	t.Logf("stale %.1fs after the cut (the mirror's no-contact threshold is %s)", time.Since(cutAt).Seconds(), stream.MirrorSilence)
	// What the hub acknowledged during the cut has not reached the region, and the
	// sidecar says so: stale, while its policy (serve) keeps it ready with what it has.
	if !a.s.Ready() || !a.denies(f.token("live")) || a.denies(f.token(during[0])) {
		t.Fatalf("cut off and stale: ready %v, live denied %v, during-0 denied %v", a.s.Ready(), a.denies(f.token("live")), a.denies(f.token(during[0])))
	}

	// Sidecars started in the region during the cut replay what the mirror has. One
	// with --stale-policy deny is stale at once (the mirror has been silent past the
	// threshold) and says not ready.
	b := f.startSidecar(t)
	strict := f.startSidecar(t, "--max-staleness", "1s", "--stale-policy", "deny")
	// From its start until the link is back, it must never let a check through: it
	// has been cut off longer than it may be.
	servedCutOff := watchServing(strict)
	testsupport.Until(t, 10*time.Second, "a sidecar started during the cut ready", func() bool { return b.s.Ready() })
	for _, jti := range []string{"before", "live"} {
		if !b.denies(f.token(jti)) {
			t.Fatalf("a sidecar started during the cut does not enforce %s, which the mirror holds", jti)
		}
	}
	testsupport.Until(t, 5*time.Second, "the new sidecar stale", func() bool { return b.staleness() > 0 })
	testsupport.Until(t, 5*time.Second, "the strict sidecar's replica caught up, stale, and not ready", func() bool {
		return strict.s.Replica.Ready() && strict.staleness() > 1 && strict.readyz() == http.StatusServiceUnavailable
	})
	if c := strict.check(f.token("fresh")); c != code.Code_UNAVAILABLE || strict.s.Ready() {
		t.Fatalf("stale under --stale-policy deny: check %v, ready %v", c, strict.s.Ready())
	}

	// The link is back: the mirror catches up with the hub, and every sidecar with it.
	// After a cut shorter than the server's 10s source health check this takes about a
	// second; after a longer one (a slow machine) the mirror's consumer is set up again
	// with the server's retry backoff, tens of seconds (BENCHMARKS.md), all the while
	// stale.
	if served := servedCutOff(); served {
		t.Fatal("the --stale-policy deny sidecar started during the cut served checks before saying stale")
	}
	f.Link.Heal()
	f.WaitLinked(t)
	healedAt := time.Now()
	for name, s := range map[string]*regional{"a": a, "b": b, "strict": strict} {
		testsupport.Until(t, 90*time.Second, "sidecar "+name+" enforcing what the hub acknowledged during the cut", func() bool {
			for _, jti := range during {
				if !s.denies(f.token(jti)) {
					return false
				}
			}
			return true
		})
		testsupport.Until(t, 10*time.Second, "sidecar "+name+" current again", func() bool { return s.staleness() == 0 && s.s.Ready() })
	}
	t.Logf("caught up %.2fs after the link was healed", time.Since(healedAt).Seconds())
	assertSameEvents(t, f)
}

// assertSameEvents checks that the mirror holds the hub's events, same sequences,
// same bytes: nothing lost, nothing added.
func assertSameEvents(t *testing.T, f *fleet) {
	t.Helper()
	ctx := context.Background()
	hub, err := f.hub.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err := f.region.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	hi, err := hub.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := mirror.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if hi.State.Msgs != mi.State.Msgs || hi.State.FirstSeq != mi.State.FirstSeq || hi.State.LastSeq != mi.State.LastSeq {
		t.Fatalf("hub %+v, mirror %+v", hi.State, mi.State)
	}
	for seq := hi.State.FirstSeq; seq <= hi.State.LastSeq; seq++ {
		hm, err := hub.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		mm, err := mirror.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("sequence %d missing from the mirror: %v", seq, err)
		}
		if !bytes.Equal(hm.Data, mm.Data) || !hm.Time.Equal(mm.Time) {
			t.Fatalf("sequence %d differs: hub %s at %v, mirror %s at %v", seq, hm.Data, hm.Time, mm.Data, mm.Time)
		}
	}
}

// watchServing polls whether s lets checks through until the returned function is
// called, which says whether it ever did.
func watchServing(s *regional) func() bool {
	var served atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if s.s.Authorizer.Gate() == authz.ReasonOK {
				served.Store(true)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return func() bool {
		close(stop)
		<-done
		return served.Load()
	}
}

// A sidecar started while the region's mirror is still copying what the hub stored
// during a cut is ready only once it holds all of it: it counts the mirror's lag, not
// only what the mirror held when it started, which would be ready, not stale, and
// missing revocations the hub acknowledged long ago.
func TestRegionReadyCountsTheMirrorsLag(t *testing.T) {
	// Published in under 10s even with -race on a loaded machine: a longer cut may wait
	// 35s for the server to resume the mirror (BENCHMARKS.md, two regions).
	const events = 20_000
	f := newFleet(t)
	ctx := context.Background()
	f.Link.Partition()
	cutAt := time.Now()
	var failed atomic.Int64
	pl := f.pub.NewPipeline(ctx, 512, func(_ int, _ publish.Result, err error) {
		if err != nil {
			failed.Add(1)
		}
	})
	last := ""
	for i := range events {
		last = fmt.Sprint("backlog-", i)
		if err := pl.Publish(i, event.Event{Type: event.TypeJTI, JTI: last, Iss: iss, Exp: time.Now().Add(time.Hour).Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	pl.Close()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d revocations not acknowledged by the hub", n)
	}
	t.Logf("%d revocations stored in the hub in %.1fs of cut", events, time.Since(cutAt).Seconds())
	f.Link.Heal()
	var lag uint64
	testsupport.Until(t, 60*time.Second, "the mirror copying the hub's backlog", func() bool {
		st, err := f.region.Stream(ctx, event.DefaultStream)
		if err != nil {
			return false
		}
		info := st.CachedInfo()
		lag = info.Mirror.Lag
		return info.Mirror.Active >= 0 && info.Mirror.Active < time.Second && lag > 0
	})
	healedAt := time.Since(cutAt)
	rep := &replica{set: blocklist.New()}
	var err error
	if rep.r, err = revsync.New(f.Leaf.Connect(), rep.set, revsync.Options{}); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = rep.r.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	// The mirror and the replica as they progress, shown if the test fails.
	var trace []string
	stopTrace := make(chan struct{})
	traced := make(chan struct{})
	go func() {
		defer close(traced)
		t0 := time.Now()
		for {
			select {
			case <-stopTrace:
				return
			case <-time.After(100 * time.Millisecond):
			}
			st, err := f.region.Stream(ctx, event.DefaultStream)
			if err == nil {
				i := st.CachedInfo()
				trace = append(trace, fmt.Sprintf("+%dms last %d lag %d active %v replica %d", time.Since(t0).Milliseconds(), i.State.LastSeq, i.Mirror.Lag, i.Mirror.Active, rep.r.LastSequence()))
			}
		}
	}()
	select {
	case <-rep.r.ReadyC():
	case <-time.After(60 * time.Second):
		t.Fatal("not ready after a minute")
	}
	close(stopTrace)
	<-traced
	t.Logf("the mirror copying %.1fs after the cut began, the sidecar ready %.1fs after", healedAt.Seconds(), time.Since(cutAt).Seconds())
	if jti, _ := rep.set.Len(); !rep.has(last) || jti < events {
		for _, l := range trace {
			t.Log(l)
		}
		t.Fatalf("ready with %d of the hub's %d revocations (the mirror was %d behind when the sidecar started)", jti, events, lag)
	}
}

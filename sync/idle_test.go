package sync

// The supervisor's pace: few JetStream requests from a replica in the steady state, and
// no slower detection of a stream replaced under it, which a consumer error or a
// recreated consumer reports before any idle check would.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// apiRequests is the JetStream API requests the embedded server has answered.
func (f *fixture) apiRequests(t *testing.T) uint64 {
	t.Helper()
	jsz, err := f.srv.Jsz(&server.JSzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return jsz.API.Total
}

// waitSteady waits until the replica is ready and caught up with n events, and then
// for one idle interval, after which its checks come IdleCheckEvery apart.
func (f *fixture) waitSteady(t *testing.T, n uint64, idle time.Duration) {
	t.Helper()
	testsupport.Until(t, 10*time.Second, "ready and caught up", func() bool {
		return f.r.Ready() && f.r.LastSequence() == n && f.r.Staleness(time.Now()) == 0
	})
	time.Sleep(idle + 500*time.Millisecond)
}

// An idle replica, ready and following, asks JetStream about once per IdleCheckEvery,
// not once (or twice) per CheckEvery.
func TestIdleReplicaAsksLittle(t *testing.T) {
	f := newFixture(t)
	for i := range 3 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("j-", i)), "")
	}
	idle := 2 * time.Second
	f.startWith(t, Options{CheckEvery: 200 * time.Millisecond, IdleCheckEvery: idle})
	f.waitSteady(t, 3, idle)

	const watch = 8 * time.Second
	before := f.apiRequests(t)
	time.Sleep(watch)
	asked := f.apiRequests(t) - before
	// 4 idle checks in 8 s, one request each; one more for the boundary. Checking every
	// CheckEvery would be 40.
	if limit := uint64(watch/idle) + 1; asked > limit {
		t.Fatalf("%d JetStream API requests in %s from an idle replica, want at most %d", asked, watch, limit)
	}
	if !f.r.Ready() || f.r.Staleness(time.Now()) != 0 {
		t.Fatalf("idle replica not ready (%q) or stale", f.r.NotReadyReason())
	}
	// Events still flow at once, and the replica stays steady after them.
	f.publish(t, "revocations.jti", jtiEvent("after"), "")
	testsupport.Until(t, 2*time.Second, "an event applied while idle", func() bool { return f.revoked("after") })
	t.Logf("%d JetStream API requests in %s (IdleCheckEvery %s)", asked, watch, idle)
}

// recreateStream deletes the stream and creates it again, as an operator would. The
// server may still be removing the old store a moment after the delete ("error
// creating store for stream"): the create is retried until it succeeds.
func (f *fixture) recreateStream(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := f.js.DeleteStream(ctx, "REVOCATIONS"); err != nil {
		t.Fatal(err)
	}
	testsupport.WaitFor(t, 5*time.Second, "the stream created again", func() error {
		_, err := stream.Ensure(ctx, f.js, stream.Settings{})
		return err
	})
}

// idleForever makes polling unable to explain a detection within a test: a check
// every 30 s once steady.
var idleForever = Options{IdleCheckEvery: 30 * time.Second, StallAfter: time.Minute}

// Row 1 while steady: the stream deleted and created again is found within about a
// second (its consumer deleted with it reports so), not at the next idle check.
func TestStreamRecreatedWhileIdleIsFoundAtOnce(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("old-", i)), "")
	}
	f.startWith(t, idleForever)
	f.waitSteady(t, 5, time.Second)

	replaced := time.Now()
	f.recreateStream(t)
	testsupport.Until(t, 3*time.Second, "the new stream found and replayed from its start", func() bool {
		return testutil.ToFloat64(f.r.resets) == 1
	})
	t.Logf("replaced stream found in %s", time.Since(replaced).Round(time.Millisecond))
	testsupport.Until(t, 5*time.Second, "ready and current on the new stream", func() bool {
		return f.r.Ready() && f.r.Staleness(time.Now()) == 0
	})
	if !f.revoked("old-0") {
		t.Fatal("entries of the old stream were dropped: revocation only grows")
	}
}

// An event the re-created stream acknowledges at a sequence the replica had applied
// from the old stream is enforced within about a second. The ordered consumer alone
// would resume after the old sequence and never deliver it; a replica told nothing
// would wait for its next idle check, ready all along.
func TestEventAtAppliedSequenceOfRecreatedStream(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("old-", i)), "")
	}
	f.startWith(t, idleForever)
	f.waitSteady(t, 5, time.Second)

	f.recreateStream(t)
	acked := time.Now()
	if seq := f.publish(t, "revocations.jti", jtiEvent("new-1"), ""); seq != 1 {
		t.Fatalf("the re-created stream stored the event at %d, want 1", seq)
	}
	testsupport.Until(t, 3*time.Second, "the event at sequence 1 of the new stream enforced", func() bool { return f.revoked("new-1") })
	t.Logf("enforced %s after the ack", time.Since(acked).Round(time.Millisecond))
	testsupport.Until(t, 5*time.Second, "ready on the new stream", func() bool {
		return f.r.Ready() && f.r.LastSequence() == 1 && f.r.Staleness(time.Now()) == 0
	})
}

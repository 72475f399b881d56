package sync

import (
	"context"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

type fixture struct {
	srv *testsupport.NATS
	js  jetstream.JetStream
	set *blocklist.Set
	reg *prometheus.Registry
	r   *Replica
}

func newFixture(t *testing.T) *fixture {
	srv := testsupport.StartNATS(t)
	return &fixture{srv: srv, js: srv.CreateStream(stream.Settings{}), set: blocklist.New(), reg: prometheus.NewPedanticRegistry()}
}

// start runs a replica on its own reconnecting connection, as the sidecar does.
func (f *fixture) start(t *testing.T) { f.startWith(t, Options{}) }

// startWith is start with options; the fixture's registry is used.
func (f *fixture) startWith(t *testing.T, opts Options) {
	opts.Registerer = f.reg
	nc, err := nats.Connect(f.srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f.r, err = New(nc, f.set, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	})
}

func (f *fixture) publish(t *testing.T, subject, payload, id string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := []jetstream.PublishOpt{}
	if id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	ack, err := f.js.Publish(ctx, subject, []byte(payload), opts...)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

func jtiEvent(jti string) string {
	return fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"iss":"https://idp"}`, jti, time.Now().Add(time.Hour).Unix())
}

func TestReplayBeforeReady(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 500; i++ {
		f.publish(t, "revocations.jti", jtiEvent(fmt.Sprint("old-", i)), "")
	}
	last := f.publish(t, "revocations.cutoff", fmt.Sprintf(`{"type":"cutoff","claim":"sub","value":"alice","not_before":%d}`, time.Now().Unix()), "")
	f.start(t)
	testsupport.Until(t, 10*time.Second, "ready", f.r.Ready)
	// Ready means every event published before start is applied.
	if got := f.r.LastSequence(); got < last {
		t.Fatalf("ready at sequence %d, stream had %d", got, last)
	}
	for i := 0; i < 500; i++ {
		if !f.set.HasJTI(f.set.JTIKey("https://idp", fmt.Sprint("old-", i))) {
			t.Fatalf("event %d not applied at ready", i)
		}
	}
	if _, ok := f.set.Cutoff(f.set.CutoffKey("", "sub", "alice")); !ok {
		t.Fatal("cutoff not applied at ready")
	}
	// Then it follows live.
	f.publish(t, "revocations.jti", jtiEvent("live"), "")
	testsupport.Until(t, 5*time.Second, "live event", func() bool { return f.set.HasJTI(f.set.JTIKey("https://idp", "live")) })
}

func TestEmptyStreamIsReady(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
}

func TestNotReadyWithoutStream(t *testing.T) {
	srv := testsupport.StartNATS(t)
	f := &fixture{srv: srv, set: blocklist.New(), reg: prometheus.NewRegistry()}
	f.start(t)
	time.Sleep(300 * time.Millisecond) // give it time to (wrongly) become ready
	if f.r.Ready() {
		t.Fatal("ready without a stream to replay")
	}
	f.js = srv.CreateStream(stream.Settings{})
	testsupport.Until(t, 10*time.Second, "ready once the stream exists", f.r.Ready)
}

func TestBadEventsAreCountedAndSkipped(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	bad := map[string]string{
		"malformed":    `{"type":"jti",`,
		"unknown_type": `{"type":"unrevoke","jti":"x","exp":99999999999}`,
		"invalid":      `{"type":"jti","jti":"","exp":5}`,
		"expired":      `{"type":"jti","jti":"x","exp":1000}`,
	}
	for _, payload := range bad {
		f.publish(t, "revocations.jti", payload, "")
	}
	f.publish(t, "revocations.jti", jtiEvent("after"), "")
	testsupport.Until(t, 5*time.Second, "event after the bad ones", func() bool { return f.set.HasJTI(f.set.JTIKey("https://idp", "after")) })
	// Oversized payloads never reach a replica: the stream's MaxMsgSize refuses them
	// (event.Decode's own limit is tested in package event).
	for reason := range bad {
		if got := testutil.ToFloat64(f.r.rejected.WithLabelValues(reason)); got != 1 {
			t.Errorf("rejected{reason=%q} = %v, want 1", reason, got)
		}
	}
	if j, _ := f.set.Len(); j != 1 {
		t.Fatalf("%d jti entries, want 1", j)
	}
}

// The server restarts on the same store while events keep being published: after it
// returns, every acked event is applied, as if nothing had happened.
func TestReconnectLosesNothing(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)

	pub := f.srv.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	js, _ := jetstream.New(pub)
	var mu gosync.Mutex
	var acked []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a steady publisher that retries each event until it is acked
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			jti := fmt.Sprintf("ev-%d", i)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
				_, err := js.Publish(ctx, "revocations.jti", []byte(jtiEvent(jti)), jetstream.WithMsgID(jti))
				cancel()
				if err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			acked = append(acked, jti)
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for restart := 0; restart < 2; restart++ {
		n := count()
		testsupport.Until(t, 10*time.Second, "events flowing", func() bool { return count() >= n+100 })
		f.srv.Restart()
	}
	n := count()
	testsupport.Until(t, 10*time.Second, "events flowing after the restarts", func() bool { return count() >= n+100 })
	close(stop)
	<-done

	testsupport.Until(t, 20*time.Second, "all acked events applied", func() bool {
		j, _ := f.set.Len()
		return j >= len(acked)
	})
	for _, jti := range acked {
		if !f.set.HasJTI(f.set.JTIKey("https://idp", jti)) {
			t.Fatalf("%s lost", jti)
		}
	}
	// Each acked event is applied once; a retried publish is deduplicated by the
	// stream (an event published but not acked may be applied without being counted
	// here, hence >=).
	applied := int(testutil.ToFloat64(f.r.applied.WithLabelValues("jti")))
	if j, _ := f.set.Len(); applied != j {
		t.Fatalf("applied %d events for %d entries: an event was doubled", applied, j)
	}
	t.Logf("published and acked %d, applied %d, lost 0", len(acked), applied)
}

func TestStalenessWhileDisconnected(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	testsupport.Until(t, 2*time.Second, "connected", f.r.Connected)
	if s := f.r.Staleness(time.Now()); s != 0 {
		t.Fatalf("staleness %v while connected", s)
	}
	f.srv.Stop()
	testsupport.Until(t, 5*time.Second, "disconnected", func() bool { return !f.r.Connected() })
	testsupport.Until(t, 5*time.Second, "staleness to grow", func() bool { return f.r.Staleness(time.Now()) > 200*time.Millisecond })
	if !f.r.Ready() {
		t.Fatal("a disconnected replica stopped being ready; it must keep serving")
	}
	f.srv.Restart()
	testsupport.Until(t, 10*time.Second, "reconnected", f.r.Connected)
	testsupport.Until(t, 2*time.Second, "staleness back to 0", func() bool { return f.r.Staleness(time.Now()) == 0 })
}

func TestMetricsRegistered(t *testing.T) {
	f := newFixture(t)
	f.start(t)
	testsupport.Until(t, 5*time.Second, "ready", f.r.Ready)
	f.publish(t, "revocations.jti", jtiEvent("m"), "")
	testsupport.Until(t, 5*time.Second, "applied", func() bool { return f.r.LastSequence() == 1 })
	for _, name := range []string{"revoked_sync_last_sequence", "revoked_sync_connected", "revoked_blocklist_entries", "revoked_events_rejected_total", "revoked_sync_staleness_seconds"} {
		if n, err := testutil.GatherAndCount(f.reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series, %v", name, n, err)
		}
	}
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(`
# HELP revoked_sync_last_sequence Last stream sequence applied to the replica.
# TYPE revoked_sync_last_sequence gauge
revoked_sync_last_sequence 1
`), "revoked_sync_last_sequence"); err != nil {
		t.Fatal(err)
	}
}

package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// A mirror that has not heard from its origin since its server started (Active -1) is
// cut off at once when the replica starts on it, and only after the silence threshold
// during the run, where a live mirror reports it for a moment (a restart, a new
// leader).
func TestJudgeMirror(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	heard := func(ago time.Duration) *jetstream.StreamSourceInfo {
		return &jetstream.StreamSourceInfo{Name: "REVOCATIONS", Active: ago}
	}
	unheard := &jetstream.StreamSourceInfo{Name: "REVOCATIONS", Active: -1}
	for name, tc := range map[string]struct {
		m        *jetstream.StreamSourceInfo
		unheard  time.Time
		atStart  bool
		want     mirrorContact
		silentAt time.Duration // the least silence counted (now - since), when cut
	}{
		"not a mirror":                  {m: nil, atStart: true, want: mirrorContact{}},
		"heard just now, at start":      {m: heard(0), atStart: true, want: mirrorContact{since: now, heard: true}},
		"heard within the threshold":    {m: heard(stream.MirrorSilence - time.Millisecond), want: mirrorContact{since: now.Add(-stream.MirrorSilence + time.Millisecond), heard: true}},
		"silent past the threshold":     {m: heard(stream.MirrorSilence + time.Second), want: mirrorContact{since: now.Add(-stream.MirrorSilence - time.Second), heard: true, cut: true}},
		"silent at start":               {m: heard(time.Minute), atStart: true, want: mirrorContact{since: now.Add(-time.Minute), heard: true, cut: true}},
		"heard again clears unheard":    {m: heard(time.Second), unheard: now.Add(-time.Minute), want: mirrorContact{since: now.Add(-time.Second), heard: true}},
		"never heard, at start":         {m: unheard, atStart: true, want: mirrorContact{since: now.Add(-stream.MirrorSilence), unheard: now.Add(-stream.MirrorSilence), cut: true}},
		"never heard, first in the run": {m: unheard, want: mirrorContact{since: now, unheard: now}},
		"never heard, within the grace": {m: unheard, unheard: now.Add(-3 * time.Second), want: mirrorContact{since: now.Add(-3 * time.Second), unheard: now.Add(-3 * time.Second)}},
		"never heard, past the grace":   {m: unheard, unheard: now.Add(-6 * time.Second), want: mirrorContact{since: now.Add(-6 * time.Second), unheard: now.Add(-6 * time.Second), cut: true}},
	} {
		t.Run(name, func(t *testing.T) {
			if got := judgeMirror(tc.m, tc.unheard, tc.atStart, now); got != tc.want {
				t.Fatalf("judgeMirror = %s, want %s", got.relativeTo(now), tc.want.relativeTo(now))
			}
		})
	}

	// The check after a start on a mirror never heard from keeps it cut off while it
	// still reports no contact, and clears it once it hears.
	start := judgeMirror(unheard, time.Time{}, true, now)
	next := judgeMirror(unheard, start.unheard, false, now.Add(time.Second))
	if !next.cut || !next.since.Equal(start.since) {
		t.Fatalf("second check, still unheard: %s after %s", next.relativeTo(now), start.relativeTo(now))
	}
	if c := judgeMirror(heard(0), next.unheard, false, now.Add(2*time.Second)); c.cut || !c.unheard.IsZero() {
		t.Fatalf("once heard: %s", c.relativeTo(now))
	}
}

// relativeTo shows c's times as offsets from now, for test failures.
func (c mirrorContact) relativeTo(now time.Time) string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "zero"
		}
		return "now" + t.Sub(now).String()
	}
	return fmt.Sprintf("{since %s, unheard %s, heard %v, cut %v}", at(c.since), at(c.unheard), c.heard, c.cut)
}

// The region's server restarts while its link to the hub is down: its mirror has not
// heard from the origin since (Active -1), and holds none of what the hub acknowledged
// meanwhile. A replica started on it is stale from the moment it is ready, long before
// the silence threshold, by more than a --max-staleness a --stale-policy deny sidecar
// would use; it was ready and not stale for one threshold before.
func TestMirrorNeverHeardAtStartIsStale(t *testing.T) {
	// The strict sidecar's --max-staleness in faults/region: a deny sidecar with it
	// must not serve on this mirror.
	const maxStaleness = time.Second
	regions, hub, region, mirror := startHubAndMirror(t)
	ctx := context.Background()
	revoke := func(jti string) {
		t.Helper()
		if _, err := hub.Publish(ctx, "revocations.jti", []byte(jtiEvent(jti))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		revoke(fmt.Sprint("before-", i))
	}
	testsupport.Until(t, 10*time.Second, "the hub's events in the mirror", func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.State.LastSeq == 3
	})

	regions.Link.Partition()
	revoke("during") // acknowledged by the hub, never in the region's mirror
	regions.Leaf.Restart()
	nc, err := nats.Connect(regions.Leaf.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	region, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	mirror, err = region.Stream(ctx, "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	if m := mirror.CachedInfo().Mirror; m == nil || m.Active >= 0 {
		t.Fatalf("mirror after its server's restart with the link down: %+v, want Active -1", m)
	}

	set := blocklist.New()
	opts := fast
	r, err := New(nc, set, opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	})
	select {
	case <-r.ReadyC():
	case <-time.After(stream.MirrorSilence):
		t.Fatal("the replica did not catch up with the mirror's 3 events within the silence threshold: the test cannot tell")
	}
	readyAfter := time.Since(started)
	if s := r.Staleness(time.Now()); s <= maxStaleness {
		t.Fatalf("ready %v after start on a mirror never heard from, with staleness %v: a --stale-policy deny sidecar with --max-staleness %v would serve", readyAfter, s, maxStaleness)
	}
	if !r.Ready() || !set.HasJTI(set.JTIKey("https://idp", "before-2")) || set.HasJTI(set.JTIKey("https://idp", "during")) {
		t.Fatalf("ready %v; the mirror's events applied, the hub's later one not there", r.Ready())
	}
	t.Logf("ready %v after start, stale %v", readyAfter.Round(time.Millisecond), r.Staleness(time.Now()).Round(time.Millisecond))
	// Stale for as long as the mirror stays unheard, past the first checks.
	time.Sleep(3 * opts.CheckEvery)
	if s := r.Staleness(time.Now()); s <= maxStaleness {
		t.Fatalf("staleness %v at later checks while the mirror is still unheard", s)
	}

	// Once the link is back the server sets the mirror up again with its retry backoff
	// (tens of seconds here): TestNewMirrorAtStartIsCurrentOnceHeard covers the
	// replica's side of it without the wait.
}

// A mirror just created reports no contact with its origin for a moment (Active -1),
// as one whose server restarted does: a replica started then counts it as cut off, and
// is current again at the first check that finds it in contact.
func TestNewMirrorAtStartIsCurrentOnceHeard(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "revocations.jti", jtiEvent("before"), "")
	ctx := context.Background()
	st, err := f.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "REGION", Storage: jetstream.FileStorage, MaxAge: stream.Config(stream.Settings{}).MaxAge,
		Mirror: &jetstream.StreamSource{Name: "REVOCATIONS"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := st.CachedInfo().Mirror; m != nil {
		t.Logf("the new mirror's Active at creation: %v", m.Active)
	}
	opts := fast
	opts.Stream = "REGION"
	f.startWith(t, opts)
	testsupport.Until(t, 5*time.Second, "the mirrored event applied, the replica ready and current", func() bool {
		return f.r.Ready() && f.revoked("before") && f.r.Staleness(time.Now()) == 0
	})
	f.publish(t, "revocations.jti", jtiEvent("live"), "")
	testsupport.Until(t, 5*time.Second, "a live event through the mirror", func() bool { return f.revoked("live") })
	for end := time.Now().Add(5 * opts.CheckEvery); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if s := f.r.Staleness(time.Now()); s != 0 {
			t.Fatalf("staleness %v while the mirror follows", s)
		}
	}
}

// startHubAndMirror starts a hub and a region (a leaf node in its own JetStream
// domain) with the hub's stream and the region's mirror of it.
func startHubAndMirror(t *testing.T) (regions *testsupport.Regions, hub, region jetstream.JetStream, mirror jetstream.Stream) {
	t.Helper()
	regions = testsupport.StartRegions(t)
	hub = regions.Hub.CreateStream(stream.Settings{})
	region, err := jetstream.New(regions.Leaf.Connect())
	if err != nil {
		t.Fatal(err)
	}
	mirror, err = stream.EnsureMirror(context.Background(), region, stream.Settings{}, stream.Origin{Domain: testsupport.HubDomain})
	if err != nil {
		t.Fatal(err)
	}
	return regions, hub, region, mirror
}

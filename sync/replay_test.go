package sync

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/testsupport"
)

func TestConsumerFilter(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg      jetstream.StreamConfig
		filtered bool
	}{
		"the revocation stream":           {jetstream.StreamConfig{Subjects: []string{"revocations.>"}}, false},
		"its two subjects":                {jetstream.StreamConfig{Subjects: []string{"revocations.jti", "revocations.cutoff"}}, false},
		"another subject too":             {jetstream.StreamConfig{Subjects: []string{"revocations.>", "audit.>"}}, true},
		"the prefix alone":                {jetstream.StreamConfig{Subjects: []string{"revocations"}}, true},
		"a longer prefix":                 {jetstream.StreamConfig{Subjects: []string{"revocationsx.>"}}, true},
		"a wildcard first":                {jetstream.StreamConfig{Subjects: []string{"*.jti"}}, true},
		"no subjects, not a mirror":       {jetstream.StreamConfig{}, true},
		"a mirror of the stream":          {jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "REVOCATIONS"}}, false},
		"a mirror filtered to the prefix": {jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "R", FilterSubject: "revocations.>"}}, false},
		"a mirror filtered elsewhere":     {jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "R", FilterSubject: "audit.>"}}, true},
		"a mirror rewriting subjects": {jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "R",
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "revocations.>", Destination: "x.>"}}}}, true},
		"a stream with sources": {jetstream.StreamConfig{Subjects: []string{"revocations.>"}, Sources: []*jetstream.StreamSource{{Name: "OTHER"}}}, true},
	} {
		t.Run(name, func(t *testing.T) {
			got := consumerFilter(tc.cfg, "revocations")
			if filtered := got != nil; filtered != tc.filtered || (filtered && (len(got) != 1 || got[0] != "revocations.>")) {
				t.Errorf("filter %q, want filtered=%v", got, tc.filtered)
			}
		})
	}
}

// TestOtherSubjectsNeverApplied: the replica's consumer has no filter on a stream of
// revocations only (consumerFilter); when the stream is given another subject while it
// follows, a valid event published there is still not applied, and the replica still
// counts itself caught up past it.
func TestOtherSubjectsNeverApplied(t *testing.T) {
	f := newFixture(t)
	f.publish(t, "revocations.jti", jtiEvent("before"), "")
	f.start(t)
	testsupport.Until(t, 10*time.Second, "ready", f.r.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, "REVOCATIONS")
	if err != nil {
		t.Fatal(err)
	}
	consumers := 0
	for ci := range s.ListConsumers(ctx).Info() {
		consumers++
		if len(ci.Config.FilterSubjects) != 0 || ci.Config.FilterSubject != "" {
			t.Fatalf("consumer filter %q %q on a stream of revocations only, want none", ci.Config.FilterSubject, ci.Config.FilterSubjects)
		}
	}
	if consumers != 1 {
		t.Fatalf("%d consumers, want the replica's", consumers)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = append(cfg.Subjects, "audit.>")
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	f.publish(t, "audit.jti", jtiEvent("other-subject"), "")
	last := f.publish(t, "revocations.jti", jtiEvent("after"), "")
	testsupport.Until(t, 10*time.Second, "the last event applied", func() bool { return f.r.LastSequence() == last })
	if !f.set.HasJTI(f.set.JTIKey("https://idp", "after")) || !f.set.HasJTI(f.set.JTIKey("https://idp", "before")) {
		t.Fatal("a revocation was not applied")
	}
	if f.set.HasJTI(f.set.JTIKey("https://idp", "other-subject")) {
		t.Fatal("an event on audit.jti, outside revocations.>, was applied")
	}
	if !f.r.Ready() {
		t.Fatalf("not ready: %s", f.r.NotReadyReason())
	}
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestReplayGC: a process serving with a low GC percent replays with at least
// replayGCPercent, and gets its own setting back once the last replaying replica is
// ready; a looser setting, or GC off, is left alone.
func TestReplayGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	debug.SetGCPercent(25)
	end1 := beginReplayGC()
	end2 := beginReplayGC()
	if p := gcPercent(); p != replayGCPercent {
		t.Fatalf("replaying at %d%%, want %d%%", p, replayGCPercent)
	}
	end1()
	end1()
	if p := gcPercent(); p != replayGCPercent {
		t.Fatalf("one replica still replays: %d%%, want %d%%", p, replayGCPercent)
	}
	end2()
	if p := gcPercent(); p != 25 {
		t.Fatalf("after the replays %d%%, want the process's 25%%", p)
	}
	for _, own := range []int{400, -1} {
		debug.SetGCPercent(own)
		end := beginReplayGC()
		if p := gcPercent(); p != own {
			t.Fatalf("replaying at %d%%, want the process's own %d%% left alone", p, own)
		}
		end()
		if p := gcPercent(); p != own {
			t.Fatalf("after the replay %d%%, want %d%%", p, own)
		}
	}

	// A replica's first replay, with the sidecar's settings.
	debug.SetGCPercent(25)
	f := newFixture(t)
	f.publish(t, "revocations.jti", jtiEvent("a"), "")
	f.start(t)
	testsupport.Until(t, 10*time.Second, "ready", f.r.Ready)
	testsupport.Until(t, 5*time.Second, "GC percent restored", func() bool { return gcPercent() == 25 })
}

package stream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// regionsWithOrigin starts a hub and a region linked by a leaf node, with the
// revocation stream in the hub, and returns the JetStream of each.
func regionsWithOrigin(t *testing.T) (r *testsupport.Regions, hub, region jetstream.JetStream) {
	t.Helper()
	r = testsupport.StartRegions(t)
	hub = r.Hub.CreateStream(stream.Settings{})
	region, err := jetstream.New(r.Leaf.Connect())
	if err != nil {
		t.Fatal(err)
	}
	return r, hub, region
}

var hubOrigin = stream.Origin{Domain: testsupport.HubDomain}

// The region's mirror copies the hub's events at the hub's sequences, with the
// stream's limits and no subjects; running it again updates its limits in place.
func TestEnsureMirror(t *testing.T) {
	_, hub, region := regionsWithOrigin(t)
	ctx := context.Background()
	for _, subj := range []string{"revocations.jti", "revocations.cutoff"} {
		if _, err := hub.Publish(ctx, subj, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := stream.EnsureMirror(ctx, region, stream.Settings{MaxTokenLifetime: 12 * time.Hour}, hubOrigin)
	if err != nil {
		t.Fatal(err)
	}
	testsupport.Until(t, 10*time.Second, "the hub's events in the mirror", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 2 && info.State.LastSeq == 2
	})
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.Name != "REVOCATIONS" || len(cfg.Subjects) != 0 || cfg.MaxAge != 12*time.Hour+stream.WindowMargin ||
		cfg.Discard != jetstream.DiscardNew || cfg.MaxMsgs != stream.DefaultMaxMsgs || cfg.Storage != jetstream.FileStorage ||
		cfg.Mirror == nil || cfg.Mirror.Name != "REVOCATIONS" || cfg.Mirror.External == nil || cfg.Mirror.External.APIPrefix != "$JS.hub.API" {
		t.Fatalf("mirror config %+v (mirror %+v)", cfg, cfg.Mirror)
	}
	if info.Mirror == nil || info.Mirror.Active < 0 || info.Mirror.Active > stream.MirrorSilence {
		t.Fatalf("mirror info %+v: not following its origin", info.Mirror)
	}
	if o, ok := stream.MirrorOrigin(cfg); !ok || o != (stream.Origin{Domain: "hub", Stream: "REVOCATIONS"}) {
		t.Fatalf("MirrorOrigin = %+v, %v", o, ok)
	}

	st, err = stream.EnsureMirror(ctx, region, stream.Settings{}, hubOrigin)
	if err != nil {
		t.Fatalf("running it again: %v", err)
	}
	if got := st.CachedInfo(); got.Config.MaxAge != 24*time.Hour+stream.WindowMargin || got.State.Msgs != 2 {
		t.Fatalf("after the update: max age %v, %d events", got.Config.MaxAge, got.State.Msgs)
	}
}

// What would make a mirror that misses revocations, or never starts, is refused with
// a clear error.
func TestEnsureMirrorRefuses(t *testing.T) {
	_, hub, region := regionsWithOrigin(t)
	ctx := context.Background()
	if _, err := hub.CreateStream(ctx, jetstream.StreamConfig{Name: "UNBOUNDED", Subjects: []string{"unbounded.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}, MaxMsgs: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := region.CreateStream(ctx, jetstream.StreamConfig{Name: "LOCAL", Subjects: []string{"local.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.EnsureMirror(ctx, region, stream.Settings{Name: "COPY"}, hubOrigin); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		js     jetstream.JetStream
		s      stream.Settings
		origin stream.Origin
		want   error  // errors.Is, when set
		says   string // in the message
	}{
		"in the origin's domain": {js: hub, s: stream.Settings{Name: "COPY"}, origin: hubOrigin, want: stream.ErrSameDomain},
		"unknown domain":         {js: region, origin: stream.Origin{Domain: "nowhere"}, want: stream.ErrOriginUnreachable, says: "leaf node"},
		"no origin stream":       {js: region, origin: stream.Origin{Domain: "hub", Stream: "NOPE"}, want: stream.ErrOriginUnreachable},
		"bad domain":             {js: region, origin: stream.Origin{Domain: "hub.x"}, says: "one subject token"},
		"fewer events":           {js: region, s: stream.Settings{MaxMsgs: 10}, origin: hubOrigin, says: "--max-msgs 4000000"},
		"unbounded origin":       {js: region, s: stream.Settings{Name: "U"}, origin: stream.Origin{Domain: "hub", Stream: "UNBOUNDED"}, says: "give the origin a limit"},
		"not a mirror":           {js: region, s: stream.Settings{Name: "LOCAL"}, origin: hubOrigin, want: stream.ErrNotMirror},
		"another origin":         {js: region, s: stream.Settings{Name: "COPY"}, origin: stream.Origin{Domain: "hub", Stream: "OTHER"}, says: "cannot change"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := stream.EnsureMirror(ctx, tc.js, tc.s, tc.origin)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v and %q", err, tc.want, tc.says)
			}
		})
	}
	// Ensure (stream init without --mirror-of, the chart's hook) on the mirror says
	// what it is instead of the server's "can not change mirror".
	// The server would "promote" it to a stream of its own, cut off from the hub and
	// silently so: its sidecars would no longer see a mirror to report stale.
	_, err := stream.Ensure(ctx, region, stream.Settings{Name: "COPY"})
	if !errors.Is(err, stream.ErrIsMirror) || !strings.Contains(err.Error(), "--mirror-of hub") {
		t.Fatalf("Ensure on a mirror: %v", err)
	}
	st, err := region.Stream(ctx, "COPY")
	if err != nil {
		t.Fatal(err)
	}
	if st.CachedInfo().Config.Mirror == nil {
		t.Fatal("the mirror was turned into a stream of its own")
	}
}

// MirrorOrigin reads back the domain MirrorConfig wrote, for every valid domain, and
// never panics on a stream configured by hand.
func FuzzMirrorOrigin(f *testing.F) {
	for _, s := range []string{"hub", "region-a", "", "$JS.x.API", ".API", "$JS.", "a.b", "hub\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, ok := stream.MirrorOrigin(jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "R", External: &jetstream.ExternalStream{APIPrefix: s}}})
		if !ok || o.Stream != "R" {
			t.Fatalf("MirrorOrigin(%q) = %+v, %v", s, o, ok)
		}
		if stream.ValidDomain(s) != nil {
			return
		}
		o, ok = stream.MirrorOrigin(stream.MirrorConfig(stream.Settings{}, stream.Origin{Domain: s}))
		if !ok || o.Domain != s || o.Stream != "REVOCATIONS" {
			t.Fatalf("domain %q read back as %+v", s, o)
		}
	})
}

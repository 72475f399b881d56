package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

// An upgrade: a stream created by an earlier version (DiscardOld, MaxAge equal to the
// token lifetime, no message limit) is updated in place by Ensure, as the chart's hook
// and revokectl stream init run it, and keeps its events.
func TestEnsureUpdatesAnOlderStream(t *testing.T) {
	srv := testsupport.StartNATS(t)
	js, err := jetstream.New(srv.Connect())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := stream.Config(stream.Settings{})
	old.Discard, old.MaxAge, old.MaxMsgs = jetstream.DiscardOld, 24*time.Hour, -1
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "revocations.jti", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	st, err := stream.Ensure(ctx, js, stream.Settings{})
	if err != nil {
		t.Fatalf("updating the older stream: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.Discard != jetstream.DiscardNew || cfg.MaxMsgs != stream.DefaultMaxMsgs || cfg.MaxAge != 24*time.Hour+stream.WindowMargin || info.State.Msgs != 1 {
		t.Fatalf("after Ensure: discard %v, max msgs %d, max age %v, %d messages", cfg.Discard, cfg.MaxMsgs, cfg.MaxAge, info.State.Msgs)
	}
	if !stream.CoversWindow(cfg.MaxAge, 24*time.Hour, 5*time.Minute) || stream.CoversWindow(24*time.Hour, 24*time.Hour, 10*time.Second) {
		t.Fatal("the window check disagrees with the stream's MaxAge")
	}
}

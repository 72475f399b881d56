package sidecar_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/revoked-dev/revoked/internal/sidecar"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// TestMain fails the package's tests if any goroutine outlives them: every server,
// client, watcher and loop a test starts must be stopped by the time it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A sidecar started and shut down leaves no goroutine behind, however often it is
// done, with NATS, checks and a revocation in between.
func TestLeakSidecarStartStop(t *testing.T) {
	e := newSecEnv(t) // NATS, the stream and a first sidecar
	ignore := goleak.IgnoreCurrent()
	cfg := e.cfg
	for i := range 3 {
		sc, err := sidecar.Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		testsupport.Until(t, 20*time.Second, "ready", sc.Ready)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := sc.Shutdown(ctx); err != nil {
			t.Errorf("round %d: shutdown: %v", i, err)
		}
		cancel()
		goleak.VerifyNone(t, ignore,
			// The embedded server keeps the sidecar's ephemeral consumer until its
			// inactivity threshold passes: server goroutines, not the sidecar's.
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).loopAndGatherMsgs"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundAcks"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundNextMsgReqs"))
	}
}

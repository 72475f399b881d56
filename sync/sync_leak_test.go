package sync_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// TestMain fails the package's tests if any goroutine outlives them: every server,
// client, watcher and loop a test starts must be stopped by the time it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A mirror whose origin is unreachable (TestMirrorNeverHeardAtStartIsStale)
		// leaves nats-server waiting for its consumer's creation past the server's
		// shutdown, up to 30 s: the server's goroutine, not the replica's.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).setupMirrorConsumer.func3"))
}

// A replica run and stopped, with its connection closed, leaves no goroutine behind.
func TestLeakReplicaRunStop(t *testing.T) {
	srv := testsupport.StartNATS(t)
	srv.CreateStream(stream.Settings{})
	ignore := goleak.IgnoreCurrent()
	for range 3 {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		r, err := revsync.New(nc, blocklist.New(), revsync.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		select {
		case <-r.ReadyC():
		case <-time.After(10 * time.Second):
			t.Fatal("replica not ready")
		}
		cancel()
		<-done
		nc.Close()
		goleak.VerifyNone(t, ignore,
			// The embedded server keeps the ephemeral consumer until its inactivity
			// threshold passes: server goroutines, not the replica's.
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).loopAndGatherMsgs"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundAcks"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*consumer).processInboundNextMsgReqs"))
	}
}

package sync

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestSnapshotReadGivesUpWhenChunksStop: a snapshot read blocked on chunks that never
// come (the object reader waits on a pipe whose writer is silent) returns an error once
// the stall guard gives up, so the replica replays instead of waiting for ever.
func TestSnapshotReadGivesUpWhenChunksStop(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	guard := newStallGuard(context.Background(), 100*time.Millisecond)
	defer guard.stop()
	defer guard.closeOnStall(pr)()
	done := make(chan error, 1)
	go func() {
		_, err := guard.reader(pr).Read(make([]byte, 16))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read with no chunks coming still blocks 5 s after the guard's 100 ms")
	}
}

package sync_test

import (
	"context"
	"testing"

	revsync "github.com/revoked-dev/revoked/sync"
)

// runReplica runs r until the test ends, then waits for Run to return.
func runReplica(t *testing.T, r *revsync.Replica) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

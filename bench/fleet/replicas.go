package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/blocklist"
	revsync "github.com/revoked-dev/revoked/sync"
)

const snapshotBucket = "REVOKED_SNAPSHOTS"

// fleetLog shows the replicas' warnings (a snapshot refused or given up, a consumer
// lost): a fleet that falls back to replay says why.
var fleetLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// replica is one simulated sidecar: its own connection, blocklist and Replica.
type replica struct {
	nc   *nats.Conn
	set  *blocklist.Set
	r    *revsync.Replica
	done chan struct{}
}

// fleetOf is N replicas started together.
type fleetOf struct {
	rs     []*replica
	cancel context.CancelFunc
}

func (f *fleetOf) stop() {
	f.cancel()
	for _, r := range f.rs {
		<-r.done
		r.nc.Close()
	}
}

type restartStats struct {
	firstReady, allReady time.Duration
	natsCPU              time.Duration
	bytes                uint64
}

// restart starts n replicas at once (connections opened first, then every Run
// started together) and waits until all are ready.
func restart(ctx context.Context, env *benchkit.Env, n int, withSnap bool, snap *snapshotFiles, timeout time.Duration) (*fleetOf, restartStats, error) {
	rctx, cancel := context.WithCancel(ctx)
	f := &fleetOf{cancel: cancel}
	opts := revsync.Options{}
	if withSnap {
		opts.SnapshotBucket, opts.SnapshotPublicKeys = snapshotBucket, []ed25519.PublicKey{snap.pub}
	}
	for range n {
		nc, err := nats.Connect(env.URL, nats.MaxReconnects(-1), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fleetLog.Warn("nats async error", "err", err)
		}))
		if err != nil {
			f.stop()
			return nil, restartStats{}, err
		}
		set := blocklist.New()
		o := opts
		o.Registerer = prometheus.NewRegistry()
		o.Log = fleetLog
		r, err := revsync.New(nc, set, o)
		if err != nil {
			nc.Close()
			f.stop()
			return nil, restartStats{}, err
		}
		f.rs = append(f.rs, &replica{nc: nc, set: set, r: r, done: make(chan struct{})})
	}
	ns := env.NATS.Cmd.Process.Pid
	cpu0 := benchkit.CPUTime(ns)
	start := time.Now()
	for _, r := range f.rs {
		go func() { _ = r.r.Run(rctx); close(r.done) }()
	}
	var st restartStats
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.After(timeout)
	for _, r := range f.rs {
		wg.Go(func() {
			select {
			case <-r.r.ReadyC():
			case <-deadline:
				return
			}
			took := time.Since(start)
			mu.Lock()
			if st.firstReady == 0 || took < st.firstReady {
				st.firstReady = took
			}
			st.allReady = max(st.allReady, took)
			mu.Unlock()
		})
	}
	wg.Wait()
	st.natsCPU = benchkit.CPUTime(ns) - cpu0
	for _, r := range f.rs {
		if !r.r.Ready() {
			f.stop()
			return nil, st, fmt.Errorf("%d replicas: one was not ready after %s", n, timeout)
		}
		st.bytes += r.nc.Stats().InBytes
	}
	return f, st, nil
}

type snapshotFiles struct{ pub ed25519.PublicKey }

// writeSnapshot builds a snapshot of the stream and stores it signed, as the chart's
// snapshot job does.
func writeSnapshot(ctx context.Context, env *benchkit.Env) (*snapshotFiles, error) {
	t0 := time.Now()
	snap, err := revsync.BuildSnapshot(ctx, env.JS, revsync.Options{}, time.Now())
	if err != nil {
		return nil, err
	}
	privPEM, pubPEM, err := revsync.GenerateSnapshotKey()
	if err != nil {
		return nil, err
	}
	key, err := revsync.ParseSnapshotSigningKey(privPEM)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(env.Dir, "snapshot.pub"), pubPEM, 0o644); err != nil {
		return nil, err
	}
	if err := revsync.WriteSnapshot(ctx, env.JS, snapshotBucket, snap, key); err != nil {
		return nil, err
	}
	fmt.Printf("fleet: snapshot of %d entries at sequence %d built and written in %.2fs\n", len(snap.JTI)+len(snap.Cutoffs), snap.Sequence, time.Since(t0).Seconds())
	return &snapshotFiles{pub: key.Public().(ed25519.PublicKey)}, nil
}

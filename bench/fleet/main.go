// Command fleet runs N sidecar replicas (the sidecar's sync.Replica, each on its own
// NATS connection with its own blocklist) in one process against one nats-server
// process, and reports how the cost grows with N:
//
//   - propagation: publish → applied by every one of the N replicas, p50/p99;
//   - a simultaneous restart of all N over a stream of -entries events, from a full
//     replay and from a snapshot: time until all are ready, nats-server CPU-seconds and
//     bytes delivered per replica start;
//   - idle: nats-server RSS and CPU per replica that only follows the stream.
//
// The replicas share this process's cores with each other and with nats-server, so
// restart times are those of N starts on one machine, not of N pods.
//
//	go run ./bench/fleet -n 10,50,200 -entries 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/revoked-dev/revoked/bench/benchkit"
)

func main() { os.Exit(run()) }

type opts struct {
	natsBin      string
	sizes        []int
	entries      int
	events       int
	gap          time.Duration
	idle         time.Duration
	snapshot     bool
	replay       bool
	readyTimeout time.Duration
	dir          string
}

func run() int {
	natsBin := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	sizes := flag.String("n", "10,50,200", "fleet sizes, comma-separated")
	entries := flag.Int("entries", 100_000, "jti events in the stream before the restarts")
	events := flag.Int("events", 100, "revocations timed for propagation")
	gap := flag.Duration("gap", 20*time.Millisecond, "time between timed revocations")
	idle := flag.Duration("idle", 20*time.Second, "how long the idle fleet is watched")
	snapshot := flag.Bool("snapshot", true, "also restart every fleet from a snapshot")
	replay := flag.Bool("replay", true, "restart every fleet by full replay (false: from the snapshot only)")
	timeout := flag.Duration("timeout", 10*time.Minute, "longest wait for a fleet to be ready")
	dir := flag.String("dir", "", "work directory (default: a new temporary one)")
	flag.Parse()
	o := opts{natsBin: *natsBin, entries: *entries, events: *events, gap: *gap, idle: *idle, snapshot: *snapshot, replay: *replay, readyTimeout: *timeout, dir: *dir}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "fleet: bad -n", s)
			return 2
		}
		o.sizes = append(o.sizes, n)
	}
	if err := fleet(o); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	return 0
}

func fleet(o opts) error {
	ctx := context.Background()
	env, err := benchkit.NewEnv(ctx, o.natsBin, o.dir, "revoked-fleet")
	if err != nil {
		return err
	}
	defer env.Close()
	t0 := time.Now()
	if _, err := benchkit.FillJTI(ctx, env.JS, env.Issuer.Iss, o.entries); err != nil {
		return err
	}
	fmt.Printf("fleet: published %d events in %.1fs\n", o.entries, time.Since(t0).Seconds())
	var snap *snapshotFiles
	if o.snapshot {
		if snap, err = writeSnapshot(ctx, env); err != nil {
			return err
		}
	}
	ns := env.NATS.Cmd.Process.Pid
	for _, n := range o.sizes {
		baseRSS := benchkit.RSS(ns)
		for _, withSnap := range []bool{false, true} {
			if (withSnap && snap == nil) || (!withSnap && !o.replay && snap != nil) {
				continue
			}
			f, st, err := restart(ctx, env, n, withSnap, snap, o.readyTimeout)
			if err != nil {
				return err
			}
			mode := "replay"
			if withSnap {
				mode = "snapshot"
			}
			fmt.Printf("FIGURE fleet-restart n=%d entries=%d mode=%s all_ready=%.2fs first_ready=%.2fs nats_cpu=%.2fs nats_cpu_per_start=%.3fs bytes_per_start=%.1fMiB\n",
				n, o.entries, mode, st.allReady.Seconds(), st.firstReady.Seconds(), st.natsCPU.Seconds(), st.natsCPU.Seconds()/float64(n), float64(st.bytes)/float64(n)/(1<<20))
			if withSnap || snap == nil {
				if err := idleAndPropagation(ctx, env, f, o, baseRSS); err != nil {
					f.stop()
					return err
				}
			}
			f.stop()
		}
	}
	return nil
}

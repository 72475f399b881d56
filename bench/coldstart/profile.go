package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/revoked-dev/revoked/bench/benchkit"
)

// profileReplay runs the sidecar's replica in this process through one full replay
// under the CPU profiler, to show where the sidecar's side of a replay goes; NATS runs
// in its own process, so the profile holds none of it, and its CPU time is printed.
func profileReplay(ctx context.Context, path, url, iss, lastJTI string, ns *benchkit.Proc, timeout time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	natsCPU := cpuTime(ns.Cmd.Process.Pid)
	selfCPU := cpuTime(os.Getpid())
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	took, err := replicaStart(ctx, url, "", ed25519.PublicKey(nil), iss, lastJTI, timeout)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	fmt.Printf("coldstart: profiled in-process replay: ready in %.3fs, CPU: replica %.2fs, nats-server %.2fs; profile in %s\n",
		took.Seconds(), (cpuTime(os.Getpid()) - selfCPU).Seconds(), (cpuTime(ns.Cmd.Process.Pid) - natsCPU).Seconds(), path)
	return nil
}

// Command coldstart measures how long a new revoked sidecar takes from exec to ready
// (gRPC health SERVING) when the revocation stream already holds -events events. It
// runs real processes: nats-server with JetStream and the revoked binary.
//
//	go run ./bench/coldstart -events 1000000 -runs 3
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	revsync "github.com/revoked-dev/revoked/sync"
)

func main() { os.Exit(run()) }

func run() int {
	natsBin := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	revokedBin := flag.String("revoked", "bin/revoked", "revoked binary; several, comma-separated, start in turn in every run (an interleaved comparison)")
	events := flag.Int("events", 1_000_000, "jti events in the stream before the sidecar starts")
	runs := flag.Int("runs", 3, "sidecar starts measured (the median is reported)")
	dir := flag.String("dir", "", "work directory (default: a new temporary one, removed at the end)")
	timeout := flag.Duration("timeout", 120*time.Second, "longest wait for one sidecar to be ready")
	extra := flag.String("sidecar-args", "", "extra sidecar flags, space-separated")
	sidecarEnv := flag.String("sidecar-env", "", "variables for the sidecar only (GOGC=25,GOMEMLIMIT=460MiB), comma-separated; several sets, ';'-separated, start in turn like -revoked binaries")
	snapshot := flag.Bool("snapshot", false, "also build a snapshot at the stream's end, publish -tail more events, and measure a start from the snapshot")
	tail := flag.Int("tail", 10_000, "with -snapshot: events published after the snapshot")
	cpuProfile := flag.String("cpuprofile", "", "also replay once with the sidecar's replica in this process, writing its CPU profile here (nats-server's CPU is reported beside it)")
	flag.Parse()
	o := opts{natsBin: *natsBin, revokedBin: *revokedBin, n: *events, runs: *runs, dir: *dir, timeout: *timeout,
		extra: strings.Fields(*extra), snapshot: *snapshot, tail: *tail, cpuProfile: *cpuProfile}
	for set := range strings.SplitSeq(*sidecarEnv, ";") {
		var env []string
		if set != "" {
			env = strings.Split(set, ",")
		}
		o.envs = append(o.envs, env)
	}
	if err := coldstart(o); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		return 1
	}
	return 0
}

type opts struct {
	natsBin, revokedBin, dir string
	cpuProfile               string
	envs                     [][]string // variable sets for the sidecar; one empty set by default
	n, runs, tail            int
	timeout                  time.Duration
	extra                    []string
	snapshot                 bool
}

const snapshotBucket = "REVOKED_SNAPSHOTS"

func coldstart(o opts) error {
	revokedBin, n, runs, timeout, extra := o.revokedBin, o.n, o.runs, o.timeout, o.extra
	ctx := context.Background()
	env, err := benchkit.NewEnv(ctx, o.natsBin, o.dir, "revoked-coldstart")
	if err != nil {
		return err
	}
	defer env.Close()
	// Fill the stream: n events, the last of which revokes a token we hold.
	dir, ns, url, iss, js := env.Dir, env.NATS, env.URL, env.Issuer, env.JS
	exp := time.Now().Add(2 * time.Hour).Unix()
	lastJTI := benchkit.RandomID()
	probe := envoyreq.Check(envoyreq.Bearer(iss.Token("probe", lastJTI, time.Hour)))
	t0 := time.Now()
	const batch = 50_000
	var lastSeq uint64
	for done := 0; done < n; done += batch {
		payloads := make([][]byte, min(batch, n-done))
		for i := range payloads {
			jti := benchkit.RandomID()
			if done+i == n-1 {
				jti = lastJTI
			}
			payloads[i] = benchkit.JTIEvent(iss.Iss, jti, exp)
		}
		if lastSeq, err = benchkit.PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), payloads, 1000); err != nil {
			return err
		}
	}
	pub := time.Since(t0)
	fmt.Printf("coldstart: published %d events in %.1fs (%.0f/s), last sequence %d\n", n, pub.Seconds(), float64(n)/pub.Seconds(), lastSeq)

	// Each binary of -revoked starts in turn, run after run, so that a comparison
	// sees the same stream and the same neighbours on the machine.
	// Every (binary, variable set) is one variant.
	type variant struct {
		bin   string
		env   []string
		label string
	}
	var variants []variant
	for _, bin := range strings.Split(revokedBin, ",") {
		for _, env := range o.envs {
			variants = append(variants, variant{bin, env, strings.TrimSpace(bin + " " + strings.Join(env, ","))})
		}
	}
	readies := make([][]time.Duration, len(variants))
	for r := range runs {
		for b, v := range variants {
			sock := filepath.Join(dir, "g"+strconv.Itoa(r)+"-"+strconv.Itoa(b)+".sock")
			args := append([]string{"--grpc-addr", "unix://" + sock, "--http-addr", "", "--admin-addr", "127.0.0.1:0",
				"--nats-url", url, "--jwks-file", filepath.Join(dir, "jwks.json"), "--log-level", "warn"}, extra...)
			start := time.Now()
			sc, err := benchkit.StartEnv("revoked", filepath.Join(dir, "sidecar.log"), v.bin, v.env, args...)
			if err != nil {
				return err
			}
			natsCPU := cpuTime(ns.Cmd.Process.Pid)
			ready, rss, err := waitReady(sock, timeout, probe, sc)
			if err != nil {
				sc.Stop()
				return err
			}
			took := ready.Sub(start)
			readies[b] = append(readies[b], took)
			fmt.Printf("coldstart: run %d %s: exec to ready %.3fs, last event enforced, RSS %.0f MiB, CPU: sidecar %.2fs, nats-server %.2fs\n",
				r+1, v.label, took.Seconds(), float64(rss)/(1<<20), cpuTime(sc.Cmd.Process.Pid).Seconds(), (cpuTime(ns.Cmd.Process.Pid) - natsCPU).Seconds())
			sc.Stop()
		}
	}
	for b, v := range variants {
		rs := readies[b]
		slices.Sort(rs)
		label := ""
		if len(variants) > 1 {
			label = " variant=" + strings.ReplaceAll(v.label, " ", "_")
		}
		fmt.Printf("FIGURE coldstart events=%d%s ready_median=%.3fs ready_min=%.3fs ready_max=%.3fs publish_rate=%.0f/s\n",
			n, label, rs[len(rs)/2].Seconds(), rs[0].Seconds(), rs[len(rs)-1].Seconds(), float64(n)/pub.Seconds())
	}
	if o.cpuProfile != "" {
		if err := profileReplay(ctx, o.cpuProfile, url, iss.Iss, lastJTI, ns, timeout); err != nil {
			return err
		}
	}
	if !o.snapshot {
		return nil
	}
	return withSnapshot(ctx, o, js, url, dir, iss)
}

// withSnapshot builds a snapshot at the stream's end, publishes o.tail more events (the
// last revoking a probe token), and measures starts that load the snapshot and replay
// the tail: with the sidecar process when it has --snapshot-bucket, else with a replica
// in this process (the sidecar's replica code, without gRPC or JWKS), beside the same
// in-process replica replaying everything, for comparison.
func withSnapshot(ctx context.Context, o opts, js jetstream.JetStream, url, dir string, iss *benchkit.Issuer) error {
	t0 := time.Now()
	snap, err := revsync.BuildSnapshot(ctx, js, revsync.Options{}, time.Now())
	if err != nil {
		return err
	}
	built := time.Since(t0)
	// A snapshot is signed by the snapshot job's key; the sidecars trust its public key.
	privPEM, pubPEM, err := revsync.GenerateSnapshotKey()
	if err != nil {
		return err
	}
	key, err := revsync.ParseSnapshotSigningKey(privPEM)
	if err != nil {
		return err
	}
	pubFile := filepath.Join(dir, "snapshot.pub")
	if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
		return err
	}
	b, err := snap.MarshalSigned(key)
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := revsync.WriteSnapshot(ctx, js, snapshotBucket, snap, key); err != nil {
		return err
	}
	fmt.Printf("coldstart: snapshot at sequence %d: %d jti, %d cutoffs, %.1f MiB; built in %.2fs, written in %.2fs\n",
		snap.Sequence, len(snap.JTI), len(snap.Cutoffs), float64(len(b))/(1<<20), built.Seconds(), time.Since(t0).Seconds())

	exp := time.Now().Add(2 * time.Hour).Unix()
	lastJTI := benchkit.RandomID()
	probe := envoyreq.Check(envoyreq.Bearer(iss.Token("probe-tail", lastJTI, time.Hour)))
	payloads := make([][]byte, o.tail)
	for i := range payloads {
		jti := benchkit.RandomID()
		if i == len(payloads)-1 {
			jti = lastJTI
		}
		payloads[i] = benchkit.JTIEvent(iss.Iss, jti, exp)
	}
	if _, err := benchkit.PublishAll(ctx, js, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), payloads, 1000); err != nil {
		return err
	}

	help, _ := exec.Command(o.revokedBin, "-h").CombinedOutput()
	var readies []time.Duration
	mode := "process"
	if strings.Contains(string(help), "snapshot-public-key") {
		for r := range o.runs {
			sock := filepath.Join(dir, "s"+strconv.Itoa(r)+".sock")
			args := append([]string{"--grpc-addr", "unix://" + sock, "--http-addr", "", "--admin-addr", "127.0.0.1:0",
				"--nats-url", url, "--jwks-file", filepath.Join(dir, "jwks.json"), "--log-level", "warn",
				"--snapshot-bucket", snapshotBucket, "--snapshot-public-key", pubFile}, o.extra...)
			start := time.Now()
			sc, err := benchkit.Start("revoked", filepath.Join(dir, "sidecar.log"), o.revokedBin, args...)
			if err != nil {
				return err
			}
			ready, rss, err := waitReady(sock, o.timeout, probe, sc)
			sc.Stop()
			if err != nil {
				return err
			}
			readies = append(readies, ready.Sub(start))
			fmt.Printf("coldstart: snapshot run %d: exec to ready %.3fs, last event enforced, RSS %.0f MiB\n", r+1, ready.Sub(start).Seconds(), float64(rss)/(1<<20))
		}
	} else {
		mode = "in-process"
		fmt.Println("coldstart: this revoked binary has no --snapshot-public-key flag; measuring the replica in this process")
		var full []time.Duration
		for r := range o.runs {
			for _, bucket := range []string{"", snapshotBucket} {
				took, err := replicaStart(ctx, url, bucket, key.Public().(ed25519.PublicKey), iss.Iss, lastJTI, o.timeout)
				if err != nil {
					return err
				}
				if bucket == "" {
					full = append(full, took)
				} else {
					readies = append(readies, took)
				}
				fmt.Printf("coldstart: in-process run %d, snapshot=%v: start to ready %.3fs, last event applied\n", r+1, bucket != "", took.Seconds())
			}
		}
		slices.Sort(full)
		fmt.Printf("coldstart: in-process full replay of %d events: median %.3fs\n", o.n+o.tail, full[len(full)/2].Seconds())
	}
	slices.Sort(readies)
	fmt.Printf("FIGURE coldstart-snapshot events=%d+%d mode=%s ready_median=%.3fs ready_min=%.3fs ready_max=%.3fs\n",
		o.n, o.tail, mode, readies[len(readies)/2].Seconds(), readies[0].Seconds(), readies[len(readies)-1].Seconds())
	return nil
}

// replicaStart runs the sidecar's replica (sync.Replica) in this process on its own
// connection until ready and reports how long that took, checking that the last event
// was applied.
func replicaStart(ctx context.Context, url, bucket string, pub ed25519.PublicKey, iss, lastJTI string, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	nc, err := nats.Connect(url)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	set := blocklist.New()
	r, err := revsync.New(nc, set, revsync.Options{SnapshotBucket: bucket, SnapshotPublicKeys: []ed25519.PublicKey{pub}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-r.ReadyC():
	case <-time.After(timeout):
		return 0, fmt.Errorf("replica not ready after %s", timeout)
	}
	took := time.Since(start)
	if !set.HasJTI(set.JTIKey(iss, lastJTI)) {
		return took, fmt.Errorf("the last event was not applied at ready")
	}
	return took, nil
}

// waitReady polls gRPC health until SERVING, then checks that the token revoked by the
// stream's last event is denied (nothing was lost), and reads the process's RSS.
func waitReady(sock string, timeout time.Duration, probe *authv3.CheckRequest, p *benchkit.Proc) (time.Time, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var once sync.Once
	go func() {
		select {
		case <-p.Exited():
			once.Do(cancel)
		case <-ctx.Done():
		}
	}()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return time.Time{}, 0, fmt.Errorf("sidecar socket never appeared: %w", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	conn, err := benchkit.Dial("unix://" + sock)
	if err != nil {
		return time.Time{}, 0, err
	}
	defer conn.Close()
	if err := benchkit.WaitServing(ctx, conn); err != nil {
		return time.Time{}, 0, err
	}
	ready := time.Now()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, probe)
	if err != nil {
		return ready, 0, err
	}
	if resp.GetStatus().GetCode() == 0 {
		return ready, 0, fmt.Errorf("the token revoked by the last event was allowed at ready")
	}
	return ready, rss(p.Cmd.Process.Pid), nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuTime is the user+system CPU time of a process so far (Linux clock ticks, 100 Hz).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

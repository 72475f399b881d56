// Command memory measures what a sidecar holds in memory with a full replica: its RSS
// once ready and idle, and while it answers an open loop of checks (bench/loadgen), under
// several Go runtime settings (GOGC, GOMEMLIMIT) and binaries, started in turn in every
// run. In the same run, the load tool also drives a null Authorization server (answers
// OK at once, no decision): the floor of the gRPC transport the sidecar's p99 is
// compared with.
//
//	go build -o bin/loadgen ./cmd/loadgen
//	go run ./bench/memory -events 1000000 -variants 'GOGC=400,GOMEMLIMIT=460MiB;GOGC=100'
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/revoked-dev/revoked/bench/benchkit"
)

func main() { os.Exit(run()) }

type opts struct {
	natsBin, loadgen, dir string
	bins                  []string
	variants              [][]string
	events, runs, tokens  int
	rate                  float64
	duration, settle      time.Duration
	sidecarArgs           []string
}

func run() int {
	if len(os.Args) == 3 && os.Args[1] == "-serve-null" {
		return serveNull(os.Args[2])
	}
	natsBin := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	revoked := flag.String("revoked", "bin/revoked", "revoked binary; several, comma-separated, start in turn")
	loadgen := flag.String("loadgen", "bin/loadgen", "load tool binary (go build -o bin/loadgen ./cmd/loadgen)")
	events := flag.Int("events", 1_000_000, "jti events in the stream (live entries in every replica)")
	variants := flag.String("variants", "GOGC=400,GOMEMLIMIT=460MiB", "runtime settings to compare: ';' between variants, ',' between variables")
	runs := flag.Int("runs", 1, "rounds; each starts every binary under every variant once")
	tokens := flag.Int("tokens", 10_000, "distinct tokens the load tool sends (the token cache holds them all)")
	rate := flag.Float64("rate", 5000, "open-loop checks per second")
	duration := flag.Duration("duration", 10*time.Second, "measured load")
	settle := flag.Duration("settle", 5*time.Second, "wait after ready before the idle RSS is read")
	extra := flag.String("sidecar-args", "", "extra sidecar flags, space-separated")
	dir := flag.String("dir", "", "work directory (default: a new temporary one)")
	flag.Parse()
	o := opts{natsBin: *natsBin, loadgen: *loadgen, dir: *dir, bins: strings.Split(*revoked, ","), events: *events,
		runs: *runs, tokens: *tokens, rate: *rate, duration: *duration, settle: *settle, sidecarArgs: strings.Fields(*extra)}
	for v := range strings.SplitSeq(*variants, ";") {
		o.variants = append(o.variants, strings.Split(v, ","))
	}
	if err := measure(o); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		return 1
	}
	return 0
}

type sample struct{ idle, loadMax, loadEnd, anonIdle, anonEnd int64 }

func measure(o opts) error {
	ctx := context.Background()
	env, err := benchkit.NewEnv(ctx, o.natsBin, o.dir, "revoked-memory")
	if err != nil {
		return err
	}
	defer env.Close()
	t0 := time.Now()
	if _, err := benchkit.FillJTI(ctx, env.JS, env.Issuer.Iss, o.events); err != nil {
		return err
	}
	fmt.Printf("memory: published %d events in %.1fs\n", o.events, time.Since(t0).Seconds())
	results := map[string][]sample{}
	var order []string
	for r := range o.runs {
		// The floor first: the load tool against a server that decides nothing.
		if err := nullRun(o, env, r); err != nil {
			return err
		}
		for b, bin := range o.bins {
			for _, v := range o.variants {
				label := strings.Join(v, " ")
				if len(o.bins) > 1 {
					label = bin + " " + label
				}
				s, err := sidecarRun(o, env, bin, v, fmt.Sprintf("%d-%d-%d", r, b, len(results)), label)
				if err != nil {
					return err
				}
				if _, ok := results[label]; !ok {
					order = append(order, label)
				}
				results[label] = append(results[label], s)
			}
		}
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	for _, label := range order {
		rs := results[label]
		med := func(f func(sample) int64) float64 {
			v := make([]int64, len(rs))
			for i, s := range rs {
				v[i] = f(s)
			}
			slices.Sort(v)
			return mib(v[len(v)/2])
		}
		fmt.Printf("FIGURE memory entries=%d %s rss_idle=%.1fMiB rss_load_max=%.1fMiB rss_load_end=%.1fMiB anon_idle=%.1fMiB anon_load_end=%.1fMiB runs=%d\n", o.events, label,
			med(func(s sample) int64 { return s.idle }), med(func(s sample) int64 { return s.loadMax }), med(func(s sample) int64 { return s.loadEnd }),
			med(func(s sample) int64 { return s.anonIdle }), med(func(s sample) int64 { return s.anonEnd }), len(rs))
	}
	return nil
}

// sidecarRun starts one sidecar with env vars v, waits until ready and settled, reads
// its idle RSS, then runs the open loop against it while sampling its RSS.
func sidecarRun(o opts, env *benchkit.Env, bin string, v []string, id, label string) (sample, error) {
	sock := filepath.Join(env.Dir, "m"+id+".sock")
	admin := "127.0.0.1:" + strconv.Itoa(benchkit.FreePort())
	args := append([]string{"--grpc-addr", "unix://" + sock, "--http-addr", "", "--admin-addr", admin,
		"--nats-url", env.URL, "--jwks-file", env.JWKSPath(), "--log-level", "warn"}, o.sidecarArgs...)
	start := time.Now()
	sc, err := benchkit.StartEnv("revoked", filepath.Join(env.Dir, "sidecar.log"), bin, v, args...)
	if err != nil {
		return sample{}, err
	}
	defer sc.Stop()
	conn, err := benchkit.Dial("unix://" + sock)
	if err != nil {
		return sample{}, err
	}
	defer conn.Close()
	wctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-wctx.Done():
			return sample{}, fmt.Errorf("%s: no socket", label)
		case <-sc.Exited():
			return sample{}, fmt.Errorf("%s: sidecar exited; see %s/sidecar.log", label, env.Dir)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := benchkit.WaitServing(wctx, conn); err != nil {
		return sample{}, err
	}
	ready := time.Since(start)
	time.Sleep(o.settle)
	pid := sc.Cmd.Process.Pid
	s := sample{idle: benchkit.RSS(pid), anonIdle: benchkit.RSSAnon(pid)}
	idleHeap := heapFigures(admin)
	var peak atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			peak.Store(max(peak.Load(), benchkit.RSS(pid)))
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	cpu0 := benchkit.CPUTime(pid)
	fig, err := loadgen(o, env, "unix://"+sock, "open-"+strings.ReplaceAll(label, " ", "_"), true)
	close(stop)
	<-done
	if err != nil {
		return s, err
	}
	s.loadMax, s.loadEnd, s.anonEnd = peak.Load(), benchkit.RSS(pid), benchkit.RSSAnon(pid)
	fmt.Printf("memory: %s: ready in %.2fs; RSS idle %.1f MiB (anonymous %.1f), under load max %.1f MiB, at end %.1f MiB (anonymous %.1f); sidecar CPU under load %.2fs\n  idle: %s\n  end of load: %s\n  %s\n",
		label, ready.Seconds(), float64(s.idle)/(1<<20), float64(s.anonIdle)/(1<<20), float64(s.loadMax)/(1<<20), float64(s.loadEnd)/(1<<20), float64(s.anonEnd)/(1<<20), (benchkit.CPUTime(pid) - cpu0).Seconds(),
		idleHeap, heapFigures(admin), fig)
	return s, nil
}

// nullRun runs the open loop against the null server, in its own process.
func nullRun(o opts, env *benchkit.Env, r int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	sock := filepath.Join(env.Dir, "null"+strconv.Itoa(r)+".sock")
	p, err := benchkit.Start("null", filepath.Join(env.Dir, "null.log"), self, "-serve-null", sock)
	if err != nil {
		return err
	}
	defer p.Stop()
	fig, err := loadgen(o, env, "unix://"+sock, "open-null", false)
	if err != nil {
		return err
	}
	fmt.Printf("memory: null Authorization server (the transport's floor)\n  %s\n", fig)
	return nil
}

// loadgen runs the load tool's open loop and returns its FIGURE line. Against the
// null server no token is revoked (it allows everything).
func loadgen(o opts, env *benchkit.Env, addr, label string, revoke bool) (string, error) {
	args := []string{"-addr", addr, "-key", filepath.Join(env.Dir, "key.pem"), "-tokens", strconv.Itoa(o.tokens),
		"-c", "64", "-rate", strconv.FormatFloat(o.rate, 'f', 0, 64), "-duration", o.duration.String(), "-warmup", "3s", "-label", label}
	if revoke {
		args = append(args, "-nats-url", env.URL, "-revoked", "0.1")
	} else {
		args = append(args, "-revoked", "0")
	}
	out, err := exec.Command(o.loadgen, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("loadgen %s: %w\n%s", label, err, out)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "FIGURE") {
			return line, nil
		}
	}
	return "", fmt.Errorf("loadgen %s: no FIGURE line\n%s", label, out)
}

// Command coldstart measures how long a new revoked sidecar takes from exec to ready
// (gRPC health SERVING) when the revocation stream already holds -events events. It
// runs real processes: nats-server with JetStream and the revoked binary.
//
//	go run ./bench/coldstart -events 1000000 -runs 3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/stream"
)

func main() { os.Exit(run()) }

func run() int {
	natsBin := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	revokedBin := flag.String("revoked", "bin/revoked", "revoked binary")
	events := flag.Int("events", 1_000_000, "jti events in the stream before the sidecar starts")
	runs := flag.Int("runs", 3, "sidecar starts measured (the median is reported)")
	dir := flag.String("dir", "", "work directory (default: a new temporary one, removed at the end)")
	timeout := flag.Duration("timeout", 120*time.Second, "longest wait for one sidecar to be ready")
	extra := flag.String("sidecar-args", "", "extra sidecar flags, space-separated")
	flag.Parse()
	if err := coldstart(*natsBin, *revokedBin, *events, *runs, *dir, *timeout, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "coldstart:", err)
		return 1
	}
	return 0
}

func coldstart(natsBin, revokedBin string, n, runs int, dir string, timeout time.Duration, extra []string) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "revoked-coldstart")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ns, url, err := benchkit.StartNATS(natsBin, dir)
	if err != nil {
		return err
	}
	defer ns.Stop()
	iss, err := benchkit.LoadOrCreateIssuer(filepath.Join(dir, "key.pem"), filepath.Join(dir, "jwks.json"), "https://idp.example.com", "api")
	if err != nil {
		return err
	}

	// Fill the stream: n events, the last of which revokes a token we hold.
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := stream.Ensure(ctx, js, stream.Settings{}); err != nil {
		return err
	}
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

	var readies []time.Duration
	for r := range runs {
		sock := filepath.Join(dir, "g"+strconv.Itoa(r)+".sock")
		args := append([]string{"--grpc-addr", "unix://" + sock, "--http-addr", "", "--admin-addr", "127.0.0.1:0",
			"--nats-url", url, "--jwks-file", filepath.Join(dir, "jwks.json"), "--log-level", "warn"}, extra...)
		start := time.Now()
		sc, err := benchkit.Start("revoked", filepath.Join(dir, "sidecar.log"), revokedBin, args...)
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
		readies = append(readies, took)
		fmt.Printf("coldstart: run %d: exec to ready %.3fs, last event enforced, RSS %.0f MiB, CPU: sidecar %.2fs, nats-server %.2fs\n",
			r+1, took.Seconds(), float64(rss)/(1<<20), cpuTime(sc.Cmd.Process.Pid).Seconds(), (cpuTime(ns.Cmd.Process.Pid) - natsCPU).Seconds())
		sc.Stop()
	}
	slices.Sort(readies)
	med := readies[len(readies)/2]
	fmt.Printf("FIGURE coldstart events=%d ready_median=%.3fs ready_min=%.3fs ready_max=%.3fs publish_rate=%.0f/s\n",
		n, med.Seconds(), readies[0].Seconds(), readies[len(readies)-1].Seconds(), float64(n)/pub.Seconds())
	return nil
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

// Package soak holds the bounded soak test of revoked (make test-soak): a real sidecar
// process answers a steady rate of checks while revocations flow, and its memory and
// goroutines must stay flat after warm-up, with no error responses. It runs only with
// REVOKED_SOAK=1; REVOKED_SOAK_DURATION (default 2m), REVOKED_SOAK_RATE (checks per
// second, default 1000) and REVOKED_SOAK_TOKEN_CACHE (--token-cache-size, default 2000)
// tune it.
package soak

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// sample is one reading of the sidecar's own metrics.
type sample struct {
	at         time.Duration
	heap       float64 // go_memstats_heap_inuse_bytes
	rss        float64 // process_resident_memory_bytes
	goroutines float64 // go_goroutines
	entries    float64 // revoked_blocklist_entries{kind="jti"}
}

func TestSoak(t *testing.T) {
	if os.Getenv("REVOKED_SOAK") != "1" {
		t.Skip("set REVOKED_SOAK=1 (make test-soak)")
	}
	duration := envDuration("REVOKED_SOAK_DURATION", 2*time.Minute)
	rate := envInt("REVOKED_SOAK_RATE", 1000)
	const eventRate = 100 // revocations per second
	warmup := duration / 4

	dir := t.TempDir()
	bin := filepath.Join(dir, "revoked")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "github.com/revoked-dev/revoked/cmd/revoked")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	issuer, err := devissuer.New("EdDSA", "https://idp.soak.test", "api")
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, issuer.JWKS(), 0o600); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(dir, "revoked.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--nats-url", ns.URL(), "--jwks-file", jwks, "--issuer", issuer.Issuer, "--audience", issuer.Audience,
		// The verified-token cache holds about 3 KB per token and fills up to its size
		// with every new token seen; a size the warm-up fills keeps it out of the
		// growth measured after it.
		"--token-cache-size", strconv.Itoa(envInt("REVOKED_SOAK_TOKEN_CACHE", 2000)))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan map[string]string, 1)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = logf.Write(append(sc.Bytes(), '\n'))
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "revoked started" {
				addrs <- map[string]string{"grpc": rec["grpc"].(string), "admin": rec["admin"].(string)}
			}
		}
		_, _ = io.Copy(logf, stderr)
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	var a map[string]string
	select {
	case a = <-addrs:
	case <-exited:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("revoked exited:\n%s", b)
	case <-time.After(30 * time.Second):
		t.Fatal("revoked did not start")
	}
	metrics := func() (map[string]float64, error) {
		resp, err := http.Get("http://" + a["admin"] + "/metrics")
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		out := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					out[name] = f
				}
			}
		}
		return out, sc.Err()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + a["admin"] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("revoked not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	conn, err := grpc.NewClient(a["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	// A pool of live tokens; the publisher revokes them one by one, and mints new ones.
	type tok struct {
		raw, jti string
		exp      int64
	}
	var poolMu sync.RWMutex
	pool := make([]tok, 0, 1000)
	mint := func() tok {
		jti := devissuer.RandomID()
		exp := time.Now().Add(time.Hour).Unix()
		return tok{issuer.Token("soak", time.Hour, map[string]any{"jti": jti, "exp": exp}), jti, exp}
	}
	for range 1000 {
		pool = append(pool, mint())
	}

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var wg sync.WaitGroup
	var checks, errs, allowed, denied, published atomic.Int64
	var firstErr atomic.Value
	// Publisher: eventRate revocations a second, each replacing the revoked token in the
	// pool with a new one.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / eventRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			poolMu.Lock()
			victim := pool[i%len(pool)]
			pool[i%len(pool)] = mint()
			poolMu.Unlock()
			payload := fmt.Sprintf(`{"type":"jti","jti":%q,"exp":%d,"iss":%q}`, victim.jti, victim.exp, issuer.Issuer)
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, "revocations.jti", []byte(payload), jetstream.WithMsgID(victim.jti))
			cancel()
			if err == nil {
				published.Add(1)
			}
		}
	}()
	// Checkers: rate checks a second over 4 connections' worth of workers.
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for i := w; ; i += workers {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				poolMu.RLock()
				raw := pool[(i*7919)%len(pool)].raw
				poolMu.RUnlock()
				cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := client.Check(cctx, envoyreq.Check(envoyreq.Bearer(raw)))
				cancel()
				checks.Add(1)
				reason := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
				switch {
				case err != nil:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case reason == "ok":
					allowed.Add(1)
				case reason == "revoked_jti":
					// A token checked just before the pool replaced it.
					denied.Add(1)
				default:
					errs.Add(1)
					firstErr.CompareAndSwap(nil, "reason "+reason)
				}
			}
		}()
	}
	// Sampler.
	var samples []sample
	start := time.Now()
	every := max(duration/24, time.Second)
	tick := time.NewTicker(every)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
		m, err := metrics()
		if err != nil {
			t.Errorf("metrics: %v", err)
			continue
		}
		samples = append(samples, sample{time.Since(start), m["go_memstats_heap_inuse_bytes"], m["process_resident_memory_bytes"],
			m["go_goroutines"], m[`revoked_blocklist_entries{kind="jti"}`]})
	}
	tick.Stop()
	wg.Wait()

	for _, s := range samples {
		t.Logf("t=%-6s heap_inuse=%6.1f MiB rss=%6.1f MiB goroutines=%3.0f jti_entries=%6.0f",
			s.at.Round(time.Second), s.heap/(1<<20), s.rss/(1<<20), s.goroutines, s.entries)
	}
	var after []sample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
		}
	}
	if len(after) < 3 {
		t.Fatalf("only %d samples after warm-up", len(after))
	}
	maxOf := func(f func(sample) float64) float64 {
		return slices.Max(func() []float64 {
			var v []float64
			for _, s := range after {
				v = append(v, f(s))
			}
			return v
		}())
	}
	base := after[0]
	heapMax := maxOf(func(s sample) float64 { return s.heap })
	rssMax := maxOf(func(s sample) float64 { return s.rss })
	grMax := maxOf(func(s sample) float64 { return s.goroutines })
	t.Logf("FIGURES soak: duration=%s check_rate=%d/s checks=%d allowed=%d denied_revoked=%d errors=%d events=%d heap_inuse_after_warmup=%.1f..%.1f MiB rss=%.1f..%.1f MiB goroutines=%.0f..%.0f",
		duration, rate, checks.Load(), allowed.Load(), denied.Load(), errs.Load(), published.Load(),
		base.heap/(1<<20), heapMax/(1<<20), base.rss/(1<<20), rssMax/(1<<20), base.goroutines, grMax)
	if n := errs.Load(); n > 0 {
		t.Errorf("%d error responses (first: %v)", n, firstErr.Load())
	}
	// The rate is held on an idle machine; on a loaded one the checkers fall behind
	// (ticks are dropped, never bunched), which must not pass unnoticed either.
	if want := int64(float64(rate) * duration.Seconds() * 0.2); checks.Load() < want {
		t.Errorf("%d checks, want at least %d: the checkers stalled", checks.Load(), want)
	} else if checks.Load() < int64(float64(rate)*duration.Seconds()*0.9) {
		t.Logf("rate not held: %.0f checks/s of %d (a loaded machine?)", float64(checks.Load())/duration.Seconds(), rate)
	}
	// Flat: after warm-up the heap may grow by the blocklist's own entries (about
	// 100 bytes each) and GC noise, bounded at +50% or 16 MiB.
	if slack := max(base.heap*0.5, 16<<20); heapMax > base.heap+slack {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB after warm-up", base.heap/(1<<20), heapMax/(1<<20))
	}
	if grMax > base.goroutines+10 {
		t.Errorf("goroutines grew from %.0f to %.0f after warm-up", base.goroutines, grMax)
	}
}

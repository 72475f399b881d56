// Command propagation measures how long a revocation takes to be enforced everywhere:
// N revoked sidecar processes follow one nats-server; for each event, one publisher
// publishes a jti revocation and every sidecar is polled over gRPC with the token until
// it denies it. It reports, over many events, the time from publish to the moment the
// last (and the first) sidecar denies.
//
//	go run ./bench/propagation -sidecars 10 -events 200
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/envoyreq"
)

func main() { os.Exit(run()) }

func run() int {
	natsBin := flag.String("nats-server", "bin/nats-server", "nats-server binary")
	revokedBin := flag.String("revoked", "bin/revoked", "revoked binary")
	n := flag.Int("sidecars", 10, "sidecar processes")
	events := flag.Int("events", 200, "revocations published, one at a time")
	gap := flag.Duration("gap", 20*time.Millisecond, "pause between one event enforced everywhere and the next")
	poll := flag.Duration("poll", 200*time.Microsecond, "pause between two checks of one sidecar while waiting for the deny")
	dir := flag.String("dir", "", "work directory (default: a new temporary one, removed at the end)")
	flag.Parse()
	if err := propagation(*natsBin, *revokedBin, *n, *events, *gap, *poll, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "propagation:", err)
		return 1
	}
	return 0
}

func propagation(natsBin, revokedBin string, n, events int, gap, poll time.Duration, dir string) error {
	ctx := context.Background()
	env, err := benchkit.NewEnv(ctx, natsBin, dir, "revoked-propagation")
	if err != nil {
		return err
	}
	defer env.Close()
	dir, url, iss, js := env.Dir, env.URL, env.Issuer, env.JS

	clients := make([]authv3.AuthorizationClient, n)
	for i := range n {
		sock := filepath.Join(dir, "s"+strconv.Itoa(i)+".sock")
		p, err := benchkit.Start("revoked", filepath.Join(dir, "sidecar"+strconv.Itoa(i)+".log"), revokedBin,
			"--grpc-addr", "unix://"+sock, "--http-addr", "", "--admin-addr", "127.0.0.1:0",
			"--nats-url", url, "--jwks-file", filepath.Join(dir, "jwks.json"), "--log-level", "warn")
		if err != nil {
			return err
		}
		defer p.Stop()
		conn, err := dialWhenUp(ctx, sock)
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[i] = authv3.NewAuthorizationClient(conn)
	}
	fmt.Printf("propagation: %d sidecars ready; %d events, %s apart\n", n, events, gap)

	subject := event.Subject(event.DefaultSubjectPrefix, event.TypeJTI)
	exp := time.Now().Add(2 * time.Hour).Unix()
	var all, first, ack []time.Duration
	per := make([][]time.Duration, n)
	for e := range events {
		jti := benchkit.RandomID()
		req := envoyreq.Check(envoyreq.Bearer(iss.Token("user-"+strconv.Itoa(e), jti, time.Hour)))
		// Every sidecar verifies and caches the token first: what is timed below is the
		// revocation reaching it, not a first verification.
		for i, c := range clients {
			if r, err := c.Check(ctx, req); err != nil || r.GetStatus().GetCode() != 0 {
				return fmt.Errorf("sidecar %d did not allow a fresh token: %v %v", i, err, r.GetStatus())
			}
		}
		took := make([]time.Duration, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		var t0 time.Time
		for i, c := range clients {
			wg.Go(func() {
				<-start
				deadline := t0.Add(10 * time.Second)
				for {
					r, err := c.Check(ctx, req)
					now := time.Now()
					if err == nil && r.GetStatus().GetCode() != 0 {
						took[i] = now.Sub(t0)
						return
					}
					if now.After(deadline) {
						took[i] = -1
						return
					}
					time.Sleep(poll)
				}
			})
		}
		payload := benchkit.JTIEvent(iss.Iss, jti, exp)
		msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, benchkit.RandomID())
		t0 = time.Now()
		close(start)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			return err
		}
		ack = append(ack, time.Since(t0))
		wg.Wait()
		slowest, fastest := time.Duration(0), time.Duration(1<<62)
		for i, d := range took {
			if d < 0 {
				return fmt.Errorf("event %d: sidecar %d still allowed the token after 10s", e, i)
			}
			per[i] = append(per[i], d)
			slowest, fastest = max(slowest, d), min(fastest, d)
		}
		all, first = append(all, slowest), append(first, fastest)
		time.Sleep(gap)
	}
	sa, sf, sk := benchkit.Percentiles(all), benchkit.Percentiles(first), benchkit.Percentiles(ack)
	fmt.Printf("  publish -> enforced by all %d: %s\n", n, sa)
	fmt.Printf("  publish -> enforced by the first: %s\n", sf)
	fmt.Printf("  publish -> stream ack: %s\n", sk)
	for i := range per {
		fmt.Printf("  sidecar %d: %s\n", i, benchkit.Percentiles(per[i]))
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	fmt.Printf("FIGURE propagation sidecars=%d events=%d all_p50=%.2fms all_p99=%.2fms all_max=%.2fms first_p50=%.2fms ack_p50=%.2fms poll=%s\n",
		n, events, ms(sa.P50), ms(sa.P99), ms(sa.Max), ms(sf.P50), ms(sk.P50), poll)
	return nil
}

func dialWhenUp(ctx context.Context, sock string) (*grpc.ClientConn, error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-c.Done():
			return nil, fmt.Errorf("%s never appeared", sock)
		case <-time.After(5 * time.Millisecond):
		}
	}
	conn, err := benchkit.Dial("unix://" + sock)
	if err != nil {
		return nil, err
	}
	if err := benchkit.WaitServing(c, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

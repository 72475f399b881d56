package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"

	"github.com/revoked-dev/revoked/bench/benchkit"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/stream"
)

type options struct {
	addr, natsURL, streamName, prefix string
	keyPath, jwksPath, iss, aud       string
	initOnly                          bool
	tokens                            int
	revokedFrac                       float64
	workers, conns                    int
	rate                              float64
	duration, warmup                  time.Duration
	label                             string
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:9191", "sidecar gRPC address (host:port or unix:///path)")
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS URL: the stream is ensured and the revoked fraction published there; empty publishes nothing")
	fs.StringVar(&o.streamName, "stream", event.DefaultStream, "revocation stream")
	fs.StringVar(&o.prefix, "subject-prefix", event.DefaultSubjectPrefix, "revocation subject prefix")
	fs.StringVar(&o.keyPath, "key", "loadgen-key.pem", "ES256 signing key (PEM); created when missing")
	fs.StringVar(&o.jwksPath, "jwks", "", "write the key's JWKS here (give it to the sidecar as --jwks-file)")
	fs.BoolVar(&o.initOnly, "init", false, "only create the key and write the JWKS, then exit")
	fs.StringVar(&o.iss, "iss", "https://idp.example.com", "token issuer")
	fs.StringVar(&o.aud, "aud", "api", "token audience")
	fs.IntVar(&o.tokens, "tokens", 10_000, "distinct signed tokens in the pool")
	fs.Float64Var(&o.revokedFrac, "revoked", 0.1, "fraction of the pool revoked before the run (needs -nats-url)")
	fs.IntVar(&o.workers, "c", 32, "workers: closed loop, each sends its next check when the last is answered; open loop, the most checks in flight")
	fs.IntVar(&o.conns, "conns", 1, "gRPC connections (HTTP/2), shared round-robin by the workers")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: checks per second on a fixed schedule (latency counted from the scheduled time); 0 is closed loop")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured run time")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured closed-loop run first (fills the sidecar's token cache)")
	fs.StringVar(&o.label, "label", "", "name printed on the FIGURE lines")
	freePort := fs.Bool("free-port", false, "print a free loopback TCP port and exit (for scripts)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *freePort {
		fmt.Println(benchkit.FreePort())
		return 0
	}
	if err := load(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return 0
}

type pool struct {
	reqs    []*authv3.CheckRequest
	revoked []bool
}

func load(o options) error {
	iss, err := benchkit.LoadOrCreateIssuer(o.keyPath, o.jwksPath, o.iss, o.aud)
	if err != nil {
		return err
	}
	if o.initOnly {
		return nil
	}
	ctx := context.Background()
	p, jtis := makePool(iss, o.tokens, o.revokedFrac)
	if o.natsURL != "" {
		if err := publishRevocations(ctx, o, iss, p, jtis); err != nil {
			return err
		}
	} else if o.revokedFrac > 0 {
		return errors.New("-revoked needs -nats-url")
	}

	conns := make([]*grpc.ClientConn, o.conns)
	clients := make([]authv3.AuthorizationClient, o.conns)
	for i := range conns {
		if conns[i], err = benchkit.Dial(o.addr); err != nil {
			return err
		}
		defer conns[i].Close()
		clients[i] = authv3.NewAuthorizationClient(conns[i])
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := benchkit.WaitServing(wctx, conns[0]); err != nil {
		return err
	}
	if err := waitEnforced(wctx, clients[0], p); err != nil {
		return err
	}

	if o.warmup > 0 {
		closedLoop(ctx, clients, p, o.workers, o.warmup)
	}
	var r result
	if o.rate > 0 {
		r = openLoop(ctx, clients, p, o.workers, o.rate, o.duration)
	} else {
		r = closedLoop(ctx, clients, p, o.workers, o.duration)
	}
	report(o, r)
	if r.wrong > 0 || r.errors > 0 {
		return fmt.Errorf("%d wrong decisions, %d errors", r.wrong, r.errors)
	}
	return nil
}

// makePool signs n distinct tokens (on every core); the first frac of them are the
// ones to revoke. Requests are built once, as Envoy would send them.
func makePool(iss *benchkit.Issuer, n int, frac float64) (pool, []string) {
	p := pool{reqs: make([]*authv3.CheckRequest, n), revoked: make([]bool, n)}
	jtis := make([]string, n)
	nrev := int(float64(n) * frac)
	var wg sync.WaitGroup
	const parts = 4
	for w := range parts {
		wg.Go(func() {
			for i := w; i < n; i += parts {
				jtis[i] = benchkit.RandomID()
				tok := iss.Token(fmt.Sprintf("user-%d", i), jtis[i], 2*time.Hour)
				p.reqs[i] = envoyreq.Check(envoyreq.Bearer(tok))
				p.revoked[i] = i < nrev
			}
		})
	}
	wg.Wait()
	return p, jtis
}

func publishRevocations(ctx context.Context, o options, iss *benchkit.Issuer, p pool, jtis []string) error {
	nc, err := nats.Connect(o.natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := stream.Ensure(c, js, stream.Settings{Name: o.streamName, SubjectPrefix: o.prefix}); err != nil {
		return err
	}
	var payloads [][]byte
	exp := time.Now().Add(2 * time.Hour).Unix()
	for i, rev := range p.revoked {
		if rev {
			payloads = append(payloads, benchkit.JTIEvent(iss.Iss, jtis[i], exp))
		}
	}
	_, err = benchkit.PublishAll(c, js, event.Subject(o.prefix, event.TypeJTI), payloads, 1000)
	return err
}

// waitEnforced waits until the last revoked token is denied (the replica applies events
// in order, so every earlier one is then applied too) and a valid one is allowed.
func waitEnforced(ctx context.Context, c authv3.AuthorizationClient, p pool) error {
	lastRevoked, valid := -1, -1
	for i, r := range p.revoked {
		if r {
			lastRevoked = i
		} else if valid < 0 {
			valid = i
		}
	}
	for _, i := range []int{lastRevoked, valid} {
		if i < 0 {
			continue
		}
		for {
			resp, err := c.Check(ctx, p.reqs[i])
			if err == nil && decisionRight(resp, p.revoked[i]) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("sidecar never gave the expected decision for token %d (revoked=%v): %w", i, p.revoked[i], ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// decisionRight checks one answer: OK for a valid token; for a revoked one, a 401
// denial saying "token revoked".
func decisionRight(r *authv3.CheckResponse, revoked bool) bool {
	if !revoked {
		return r.GetStatus().GetCode() == int32(code.Code_OK) && r.GetOkResponse() != nil
	}
	d := r.GetDeniedResponse()
	if r.GetStatus().GetCode() != int32(code.Code_UNAUTHENTICATED) || d == nil || d.GetStatus().GetCode() != 401 {
		return false
	}
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			return strings.Contains(h.GetHeader().GetValue(), "token revoked")
		}
	}
	return false
}

type result struct {
	mode            string
	lat             []time.Duration
	elapsed         time.Duration
	wrong, errors   int64
	allowed, denied int64
	lag             benchkit.Stats // open loop: scheduler wake-up lag
}

type worker struct {
	lat                            []time.Duration
	wrong, errors, allowed, denied int64
}

func (w *worker) do(ctx context.Context, c authv3.AuthorizationClient, p pool, i int, since time.Time) {
	resp, err := c.Check(ctx, p.reqs[i])
	w.lat = append(w.lat, time.Since(since))
	switch {
	case err != nil:
		w.errors++
	case !decisionRight(resp, p.revoked[i]):
		w.wrong++
	case p.revoked[i]:
		w.denied++
	default:
		w.allowed++
	}
}

func merge(mode string, ws []*worker, elapsed time.Duration) result {
	r := result{mode: mode, elapsed: elapsed}
	for _, w := range ws {
		r.lat = append(r.lat, w.lat...)
		r.wrong += w.wrong
		r.errors += w.errors
		r.allowed += w.allowed
		r.denied += w.denied
	}
	return r
}

// closedLoop runs n workers, each sending its next check as soon as the last is
// answered, on random tokens of the pool.
func closedLoop(ctx context.Context, clients []authv3.AuthorizationClient, p pool, n int, d time.Duration) result {
	ws := make([]*worker, n)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for k := range n {
		w := &worker{lat: make([]time.Duration, 0, 1<<16)}
		ws[k] = w
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(k), 42))
			c := clients[k%len(clients)]
			for {
				now := time.Now()
				if now.After(deadline) {
					return
				}
				w.do(ctx, c, p, rng.IntN(len(p.reqs)), now)
			}
		})
	}
	wg.Wait()
	return merge("closed", ws, time.Since(start))
}

// openLoop sends checks on a fixed schedule, rate a second, whatever the answers do.
// Go's timers wake a sleeping process with millisecond granularity, so the scheduler
// wakes, hands every check now due to the workers (small bursts), and sleeps again.
// A check's latency runs from the moment it was handed over: time queued behind busy
// workers (the sidecar falling behind) counts; the scheduler's own wake-up lag, which
// is the load tool's, not the sidecar's, is reported apart. At most n checks are in
// flight.
func openLoop(ctx context.Context, clients []authv3.AuthorizationClient, p pool, n int, rate float64, d time.Duration) result {
	interval := time.Duration(float64(time.Second) / rate)
	total := int(d / interval)
	type job struct {
		sent time.Time
		i    int
	}
	jobs := make(chan job, total)
	ws := make([]*worker, n)
	var wg sync.WaitGroup
	for k := range n {
		w := &worker{lat: make([]time.Duration, 0, total/n+1024)}
		ws[k] = w
		wg.Go(func() {
			c := clients[k%len(clients)]
			for j := range jobs {
				w.do(ctx, c, p, j.i, j.sent)
			}
		})
	}
	lag := make([]time.Duration, 0, total)
	rng := rand.New(rand.NewPCG(7, 42))
	start := time.Now()
	for s := 0; s < total; {
		now := time.Now()
		for ; s < total; s++ {
			at := start.Add(time.Duration(s) * interval)
			if at.After(now) {
				break
			}
			jobs <- job{sent: time.Now(), i: rng.IntN(len(p.reqs))}
			lag = append(lag, now.Sub(at))
		}
		if s < total {
			time.Sleep(time.Until(start.Add(time.Duration(s) * interval)))
		}
	}
	close(jobs)
	wg.Wait()
	r := merge("open", ws, time.Since(start))
	r.lag = benchkit.Percentiles(lag)
	return r
}

func report(o options, r result) {
	st := benchkit.Percentiles(r.lat)
	achieved := float64(st.N) / r.elapsed.Seconds()
	label := o.label
	if label == "" {
		label = r.mode
	}
	fmt.Printf("loadgen %s: mode=%s workers=%d conns=%d tokens=%d revoked=%.2f target_rate=%.0f/s\n",
		label, r.mode, o.workers, o.conns, o.tokens, o.revokedFrac, o.rate)
	fmt.Printf("  checks=%d in %.2fs: achieved %.0f checks/s; allowed=%d denied=%d wrong=%d errors=%d\n",
		st.N, r.elapsed.Seconds(), achieved, r.allowed, r.denied, r.wrong, r.errors)
	fmt.Printf("  latency %s\n", st)
	if r.mode == "open" {
		fmt.Printf("  scheduler lag (load tool, not counted above) %s\n", r.lag)
	}
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	fmt.Printf("FIGURE %s rate=%.0f/s p50=%.0fus p90=%.0fus p99=%.0fus p99.9=%.0fus max=%.0fus checks=%d wrong=%d errors=%d\n",
		label, achieved, us(st.P50), us(st.P90), us(st.P99), us(st.P999), us(st.Max), st.N, r.wrong, r.errors)
}

package explore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/authz"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/jwtkeys"
	"github.com/revoked-dev/revoked/natsconn"
	"github.com/revoked-dev/revoked/stream"
	revsync "github.com/revoked-dev/revoked/sync"
)

// The revocation window is short so that NATS's MaxAge, which ages messages in real
// time, plays its part within a run.
const (
	lifetime    = 6 * time.Second  // --max-token-lifetime of every replica
	leeway      = 1 * time.Second  // --leeway
	propagation = 2 * time.Second  // an acked revocation must be enforced this long after it (or after the replica last was not ready/current)
	healthyFor  = 12 * time.Second // a replica this long without a fault must be ready and current
	stallAfter  = 3 * time.Second  // revsync.Options.StallAfter (default 10 s)
	purgeEvery  = 2 * time.Second  // revsync.Options.PurgeEvery (default 10 s)
	issuer      = "https://idp.explore.test"
	otherIssuer = "https://other.explore.test"
	audience    = "explore-api"
	snapBucket  = "EXPLORE_SNAP"
	nReplicas   = 3
	maxSkew     = 4 * time.Second // how far ahead a replica's clock may jump
	maxUnix     = 1<<32 - 1
)

// replica kinds: how each replica gets its signing keys.
const (
	keysFile    = iota // a JWKS file, polled every 500 ms
	keysURLSlow        // a JWKS URL with the default refresh (1 h): only unknown kids fetch again
	keysURLFast        // a JWKS URL refreshed every second
)

// world is one run: an embedded NATS server, its stream, a publisher, a JWKS (file and
// URL), the replicas, and the model of what was acknowledged.
type world struct {
	tb  testing.TB
	dir string
	log *ringLog

	nsOpts     *server.Options
	ns         *server.Server
	natsUp     bool
	streamGone bool // deleted by OpStreamDelete
	pub        *nats.Conn
	js         jetstream.JetStream

	jwksFile string
	jwksSrv  *httptest.Server
	keysMu   sync.Mutex
	served   []byte            // the JWKS now published
	fetches  map[int][]fetched // successful URL fetches per replica
	fileAt   []fileWrite       // JWKS file versions

	outage      atomic.Bool
	outageStart time.Time
	outageEnd   time.Time

	keys   []*sigKey
	tokens []*token
	events []*evRec
	bySeq  map[uint64]*evRec // the current stream incarnation's messages we track
	inc    int               // stream incarnation

	snapKeys       snapshotKeys
	reps           []*replica
	lastDisruption time.Time
	stats          *stats
	viol           *violation
	opIndex        int
	ignoredSeen    map[string]bool
	denied         map[[2]int]time.Time // (replica, token) first seen wrongly denied
	unlive         map[int]time.Time    // replica first seen not ready while it had to be
	rng            *rand.Rand           // samples tokens; never the operations
}

type fetched struct {
	at   time.Time
	kids map[string]bool
}

type fileWrite = fetched

type sigKey struct {
	iss       *devissuer.Issuer
	published bool
}

type token struct {
	n                int
	raw              string
	key              *sigKey
	sub, sid, client string
	jti              string
	iat              int64 // 0: none
	exp              int64
	shape            int
	mintedAt         time.Time
}

// evRec is one event the explorer published (or tried to).
type evRec struct {
	n        int
	msgID    string
	subject  string
	payload  []byte
	typ      string
	jti      string
	iss      string
	claim    string
	value    string
	client   string // a cutoff's client_id: only that client's tokens
	exp, nb  int64
	nbSure   int64 // a cutoff certainly revokes tokens issued before this (perhaps those before nb)
	maybe    bool  // far future, or otherwise outside what a replica must apply
	acked    bool
	ackedAt  time.Time
	seq      uint64
	inc      int
	gone     bool // deleted, purged, or its stream deleted: no longer promised
	attempts int
}

// definite reports whether the model promises the event.
func (e *evRec) definite() bool { return e.acked && !e.gone && !e.maybe }

type replica struct {
	w           *world
	idx         int
	keysKind    int
	proxy       *testsupport.Proxy
	partitioned bool
	partEnd     time.Time
	snapshot    bool

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	nc        *nats.Conn
	set       *blocklist.Set
	rep       *revsync.Replica
	keys      *jwtkeys.Keys
	az        *authz.Authorizer
	startedAt time.Time
	startErr  error

	skew atomic.Int64 // ns its clock is ahead of the real one (kept across restarts: the machine's clock)

	lastUnfresh atomic.Int64 // unix ns: the last time it was not (ready and staleness 0)
}

// ringLog keeps the last lines the replicas logged, for the report of a violation.
type ringLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *ringLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.lines = append(l.lines, s)
	}
	if len(l.lines) > 400 {
		l.lines = append([]string(nil), l.lines[len(l.lines)-200:]...)
	}
	return len(p), nil
}

func (l *ringLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	from := max(0, len(l.lines)-n)
	return strings.Join(l.lines[from:], "\n")
}

func (l *ringLog) logger(name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo})).With("who", name)
}

func newWorld(tb testing.TB, st *stats) (w *world, err error) {
	dir, err := os.MkdirTemp("", "explore-")
	if err != nil {
		return nil, err
	}
	w = &world{tb: tb, dir: dir, log: &ringLog{}, fetches: map[int][]fetched{}, bySeq: map[uint64]*evRec{}, stats: st,
		denied: map[[2]int]time.Time{}, ignoredSeen: map[string]bool{}, unlive: map[int]time.Time{}, rng: rand.New(rand.NewPCG(1, 2))}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	w.nsOpts = &server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: filepath.Join(w.dir, "js"),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20,
	}
	if err = w.startNATS(); err != nil {
		return nil, err
	}
	w.pub, err = nats.Connect(w.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.RetryOnFailedConnect(true), nats.Name("explore-publisher"))
	if err != nil {
		return nil, err
	}
	if w.js, err = jetstream.New(w.pub); err != nil {
		return nil, err
	}
	if err = w.ensureStream(); err != nil {
		return nil, err
	}
	// Two signing keys to begin with: Ed25519 and ES256.
	for _, alg := range []string{"EdDSA", "ES256"} {
		if err = w.addKey(alg); err != nil {
			return nil, err
		}
	}
	w.jwksSrv = httptest.NewServer(http.HandlerFunc(w.serveJWKS))
	w.snapKeys = newSnapshotKeys()
	for i := 0; i < nReplicas; i++ {
		p, err := testsupport.NewProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(w.nsOpts.Port)))
		if err != nil {
			return nil, err
		}
		r := &replica{w: w, idx: i, keysKind: i % 3, proxy: p}
		w.reps = append(w.reps, r)
		r.start()
	}
	w.lastDisruption = time.Now()
	// Wait for the replicas to be ready once, so that a run starts from a healthy state.
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range w.reps {
		for !r.fresh(time.Now()) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return w, nil
}

func (w *world) startNATS() error {
	ns, err := server.NewServer(w.nsOpts)
	if err != nil {
		return err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return errors.New("nats server not ready")
	}
	w.nsOpts.Port = ns.Addr().(*net.TCPAddr).Port
	w.ns, w.natsUp = ns, true
	return nil
}

func (w *world) stopNATS() {
	if !w.natsUp {
		return
	}
	w.ns.Shutdown()
	w.ns.WaitForShutdown()
	w.natsUp = false
}

// streamAge is the stream's MaxAge: the shortest the replicas accept for the window
// (stream.MinMaxAge), plus 2 s.
func streamAge() time.Duration { return minMaxAge(lifetime, leeway) + 2*time.Second }

func (w *world) streamSettings() stream.Settings {
	return stream.Settings{MaxTokenLifetime: lifetime, DuplicateWindow: streamAge()}
}

// ensureStream creates the stream as stream.Config shapes it, with the shortest MaxAge
// the replicas accept plus 2 s (stream.Ensure would add a margin of minutes).
func (w *world) ensureStream() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg := stream.Config(w.streamSettings())
	cfg.MaxAge = streamAge()
	_, err := w.js.CreateOrUpdateStream(ctx, cfg)
	return err
}

func (w *world) close() {
	for _, r := range w.reps {
		r.stop()
		r.proxy.Close()
	}
	if w.jwksSrv != nil {
		w.jwksSrv.Close()
	}
	if w.pub != nil {
		w.pub.Close()
	}
	if w.ns != nil {
		w.ns.Shutdown()
		w.ns.WaitForShutdown()
	}
	_ = os.RemoveAll(w.dir)
}

// JWKS: the file the file replicas poll, and the URL (one path per replica, so that
// the explorer knows which keys each replica last fetched).

func (w *world) addKey(alg string) error {
	iss, err := devissuer.New(alg, issuer, audience)
	if err != nil {
		return err
	}
	w.keys = append(w.keys, &sigKey{iss: iss, published: true})
	return w.publishJWKS()
}

func (w *world) publishJWKS() error {
	var jwks []any
	kids := map[string]bool{}
	for _, k := range w.keys {
		if k.published {
			jwks = append(jwks, k.iss.JWK())
			kids[k.iss.KID] = true
		}
	}
	b, _ := json.Marshal(map[string]any{"keys": jwks})
	if w.jwksFile == "" {
		w.jwksFile = filepath.Join(w.dir, "jwks.json")
	}
	tmp := w.jwksFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, w.jwksFile); err != nil {
		return err
	}
	w.keysMu.Lock()
	w.served = b
	w.fileAt = append(w.fileAt, fileWrite{at: time.Now(), kids: kids})
	w.keysMu.Unlock()
	return nil
}

func (w *world) serveJWKS(rw http.ResponseWriter, req *http.Request) {
	idx, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/jwks/"))
	if err != nil {
		http.NotFound(rw, req)
		return
	}
	if w.outage.Load() {
		http.Error(rw, "outage", http.StatusServiceUnavailable)
		return
	}
	w.keysMu.Lock()
	b := w.served
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	_ = json.Unmarshal(b, &set)
	kids := map[string]bool{}
	for _, k := range set.Keys {
		kids[k.KID] = true
	}
	w.fetches[idx] = append(w.fetches[idx], fetched{at: time.Now(), kids: kids})
	w.keysMu.Unlock()
	rw.Header().Set("Content-Type", "application/json")
	_, _ = rw.Write(b)
}

// keyState says whether replica r certainly knows kid (1), certainly does not (-1:
// the key is not in what it last loaded, and it would not find it by fetching again),
// or may or may not (0), at now.
func (r *replica) keyState(k *sigKey, now time.Time) int {
	w := r.w
	w.keysMu.Lock()
	defer w.keysMu.Unlock()
	kid := k.iss.KID
	var hist []fetched
	settle := 300 * time.Millisecond
	if r.keysKind == keysFile {
		hist = w.fileAt
		settle = 1500 * time.Millisecond // polled every 500 ms
	} else {
		hist = w.fetches[r.idx]
	}
	// The last version loaded long enough ago, and every version since: they must agree.
	base := -1
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].at.Before(r.startedAt) && r.keysKind != keysFile {
			break // fetched by an earlier incarnation of the replica
		}
		if now.Sub(hist[i].at) >= settle {
			base = i
			break
		}
	}
	if base < 0 {
		return 0
	}
	in := hist[base].kids[kid]
	for _, h := range hist[base+1:] {
		if h.kids[kid] != in {
			return 0
		}
	}
	if in {
		return 1
	}
	if k.published {
		return 0 // an unknown kid makes the replica fetch again: it may find it
	}
	return -1
}

// Replicas, built as internal/sidecar builds them.

func (r *replica) start() {
	w := r.w
	r.lastUnfresh.Store(time.Now().UnixNano())
	r.startedAt = time.Now()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	log := w.log.logger("replica" + strconv.Itoa(r.idx))
	kc := jwtkeys.Config{}
	switch r.keysKind {
	case keysFile:
		kc.File, kc.Refresh = w.jwksFile, 500*time.Millisecond
	case keysURLSlow:
		kc.URL = w.jwksSrv.URL + "/jwks/" + strconv.Itoa(r.idx) // default refresh: 1 h
	case keysURLFast:
		kc.URL, kc.Refresh = w.jwksSrv.URL+"/jwks/"+strconv.Itoa(r.idx), time.Second
	}
	var err error
	r.done = nil
	if r.keys, err = jwtkeys.New(r.ctx, kc, log); err != nil {
		r.startErr = err
		return
	}
	nco := natsconn.Options{URL: r.proxy.URL(), Name: "revoked-sidecar"}
	if r.nc, err = nco.Connect(log); err != nil {
		r.startErr = err
		return
	}
	reg := prometheus.NewRegistry()
	r.set = blocklist.New()
	opts := revsync.Options{
		MaxTokenLifetime: lifetime,
		Leeway:           leeway,
		// The replica's own timers, scaled down as the window is (24 h to 6 s); the
		// stream's MaxAge (8 s) would otherwise be shorter than StallAfter (10 s).
		StallAfter: stallAfter,
		PurgeEvery: purgeEvery,
		Registerer: reg,
		Log:        log,
	}
	if r.snapshot {
		opts.SnapshotBucket = snapBucket
		w.trustSnapshots(&opts)
	}
	setClock(&opts, r.clock)
	if r.rep, err = revsync.New(r.nc, r.set, opts); err != nil {
		r.startErr = err
		r.nc.Close()
		return
	}
	verifier := authz.NewVerifier(r.keys, authz.VerifierConfig{
		Issuers:     []string{issuer},
		Audiences:   []string{audience},
		Leeway:      leeway,
		RequireJTI:  true,
		MaxLifetime: lifetime,
	})
	r.az = authz.NewAuthorizer(verifier, r.set, authz.Options{CacheSize: 20_000, Metrics: authz.NewMetrics(reg), Log: log})
	r.startErr = nil
	done := make(chan struct{})
	r.done = done
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := r.rep.Run(r.ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("replica stopped", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		r.gateLoop()
	}()
	go func() { wg.Wait(); close(done) }()
}

// gateLoop is internal/sidecar's: the authorizer opens once the replica is ready and
// the keys are loaded. It also records when the replica was last not fresh.
func (r *replica) gateLoop() {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		gate := authz.ReasonOK
		if !r.rep.Ready() || !r.keys.Loaded(r.ctx) {
			gate = authz.ReasonNotReady
		}
		if gate != r.az.Gate() {
			r.az.SetGate(gate)
		}
		if !r.freshNow(now) {
			r.lastUnfresh.Store(now.UnixNano())
		}
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// freshNow: the sidecar answers checks (ready, keys loaded) and reports no staleness.
func (r *replica) freshNow(now time.Time) bool {
	return r.startErr == nil && r.az != nil && r.az.Gate() == authz.ReasonOK && r.rep.Staleness(r.clock()) == 0
}

// clock is the replica's clock: the real one, plus the jumps of OpClock.
func (r *replica) clock() time.Time { return time.Now().Add(time.Duration(r.skew.Load())) }

// fresh is freshNow as seen from the explorer's goroutine.
func (r *replica) fresh(now time.Time) bool {
	if r.startErr != nil || r.done == nil {
		return false
	}
	return r.freshNow(now)
}

func (r *replica) stop() {
	if r.cancel != nil {
		r.cancel()
	}
	if r.done != nil {
		<-r.done
	}
	if r.nc != nil {
		r.nc.Close()
	}
	r.done, r.nc = nil, nil
}

func (r *replica) restart(snapshot bool) {
	r.stop()
	r.snapshot = snapshot
	r.start()
}

// Publishing.

func (w *world) publish(e *evRec) {
	e.attempts++
	w.stats.count("publish")
	if !w.natsUp {
		// The publisher's connection buffers while it reconnects: the message may still
		// reach the stream later. It is a "maybe".
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	msg := nats.NewMsg(e.subject)
	msg.Data = e.payload
	msg.Header.Set(jetstream.MsgIDHeader, e.msgID)
	ack, err := w.js.PublishMsg(ctx, msg)
	if err != nil {
		return // unacknowledged: maybe in, maybe not
	}
	if ack.Duplicate {
		w.stats.count("publish-duplicate-ack")
		// The stream holds the first copy, unless it was deleted since (the
		// duplicate window outlives a message delete).
		if e.gone || e.inc != w.inc {
			return
		}
		if !e.acked {
			e.acked, e.ackedAt = true, time.Now()
		}
		return
	}
	e.acked, e.ackedAt, e.seq, e.inc, e.gone = true, time.Now(), ack.Sequence, w.inc, false
	w.bySeq[ack.Sequence] = e
	w.stats.count("publish-acked")
}

func (w *world) newEvent(subject string, fields map[string]any, raw []byte) *evRec {
	e := &evRec{n: len(w.events), subject: subject, inc: -1}
	e.msgID = fmt.Sprintf("explore-%d", e.n)
	if raw != nil {
		e.payload = raw
	} else {
		fields["event_id"] = e.msgID
		e.payload, _ = json.Marshal(fields)
	}
	w.events = append(w.events, e)
	return e
}

func subject(typ string) string { return event.Subject(event.DefaultSubjectPrefix, typ) }

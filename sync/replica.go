// Package sync keeps a blocklist replica in step with the revocation stream: it replays
// the JetStream stream from its first message, then follows it live, with an ordered
// consumer that cannot skip a message (the client recreates it from the last delivered
// sequence after any gap, reconnect or server restart).
//
// The package name clashes with the standard library's; import it as revsync.
package sync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
)

// Options configure a Replica.
type Options struct {
	Stream           string        // default REVOCATIONS
	SubjectPrefix    string        // default revocations
	CutoffClaims     []string      // claims a cutoff may name; default sub, sid, client_id
	MaxTokenLifetime time.Duration // cutoffs are kept this long past not_before; default 24h
	Leeway           time.Duration // entries are kept this long past their last use
	PurgeEvery       time.Duration // default 10s
	SnapshotBucket   string        // Object Store bucket holding a snapshot to load before replaying; empty: none
	StallAfter       time.Duration // no event this long, connected and behind the stream: new consumer; default 10s
	Registerer       prometheus.Registerer
	Log              *slog.Logger
}

// Replica applies the stream's events to a blocklist.Set.
type Replica struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	set  *blocklist.Set
	opts Options
	log  *slog.Logger

	target      atomic.Uint64 // the stream's last sequence when the replica started
	lastSeq     atomic.Uint64 // last stream sequence applied
	ready       atomic.Bool
	readyCh     chan struct{}
	lastContact atomic.Int64 // unix nanoseconds when NATS was last known reachable
	progress    atomic.Int64 // unix nanoseconds of the last event (or consumer start, or stall check)
	behindSince atomic.Int64 // unix nanoseconds since the replica has been stalled behind the stream; 0: not stalled

	applied  *prometheus.CounterVec
	rejected *prometheus.CounterVec
	// appliedJTI and appliedCutoff are applied's two series, resolved once: a replay
	// applies every event of the stream, and a label lookup per event shows.
	appliedJTI, appliedCutoff prometheus.Counter
	purged                    *prometheus.CounterVec
}

// New returns a Replica that will apply the stream's events to set.
func New(nc *nats.Conn, set *blocklist.Set, opts Options) (*Replica, error) {
	if opts.Stream == "" {
		opts.Stream = event.DefaultStream
	}
	if opts.SubjectPrefix == "" {
		opts.SubjectPrefix = event.DefaultSubjectPrefix
	}
	if opts.MaxTokenLifetime <= 0 {
		opts.MaxTokenLifetime = 24 * time.Hour
	}
	if opts.PurgeEvery <= 0 {
		opts.PurgeEvery = 10 * time.Second
	}
	if opts.StallAfter <= 0 {
		opts.StallAfter = 10 * time.Second
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	r := &Replica{nc: nc, js: js, set: set, opts: opts, log: opts.Log, readyCh: make(chan struct{})}
	r.lastContact.Store(time.Now().UnixNano())
	r.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_events_applied_total", Help: "Revocation events applied to the replica, by type.",
	}, []string{"type"})
	r.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_events_rejected_total", Help: "Revocation events skipped, by reason (malformed, too_large, unknown_type, invalid, expired).",
	}, []string{"reason"})
	r.purged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_blocklist_purged_total", Help: "Blocklist entries removed once no live token can match them.",
	}, []string{"kind"})
	r.appliedJTI = r.applied.WithLabelValues(event.TypeJTI)
	r.appliedCutoff = r.applied.WithLabelValues(event.TypeCutoff)
	for _, reason := range []string{"malformed", "too_large", "unknown_type", "invalid", "expired"} {
		r.rejected.WithLabelValues(reason)
	}
	opts.Registerer.MustRegister(r.applied, r.rejected, r.purged,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_last_sequence", Help: "Last stream sequence applied to the replica.",
		}, func() float64 { return float64(r.lastSeq.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_connected", Help: "1 while connected to NATS, else 0.",
		}, func() float64 { return b2f(nc.IsConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_ready", Help: "1 once the replica has caught up with the stream as it stood at start.",
		}, func() float64 { return b2f(r.ready.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_staleness_seconds", Help: "How long the replica has not been following the stream (NATS unreachable, or its consumer stalled); 0 while it follows.",
		}, func() float64 { return r.Staleness(time.Now()).Seconds() }),
	)
	for _, kind := range []string{"jti", "cutoff"} {
		opts.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_blocklist_entries", Help: "Live blocklist entries, by kind.", ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 {
			jti, cutoff := set.Len()
			if kind == "jti" {
				return float64(jti)
			}
			return float64(cutoff)
		}))
	}
	return r, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ready reports whether the replica has applied every event the stream held when the
// replica started. It stays true afterwards: a disconnected replica still serves, and
// staleness is reported separately.
func (r *Replica) Ready() bool { return r.ready.Load() }

// ReadyC is closed once the replica is ready.
func (r *Replica) ReadyC() <-chan struct{} { return r.readyCh }

// LastSequence is the last stream sequence applied.
func (r *Replica) LastSequence() uint64 { return r.lastSeq.Load() }

// Connected reports whether the NATS connection is up.
func (r *Replica) Connected() bool { return r.nc.IsConnected() }

// Staleness is how long the replica has not been following the stream: since NATS
// became unreachable, or since its last event while its consumer is stalled behind the
// stream; 0 while it follows.
func (r *Replica) Staleness(now time.Time) time.Duration {
	var d time.Duration
	if !r.nc.IsConnected() {
		d = now.Sub(time.Unix(0, r.lastContact.Load()))
	}
	if b := r.behindSince.Load(); b != 0 {
		d = max(d, now.Sub(time.Unix(0, b)))
	}
	return max(d, 0)
}

// Run replays and follows the stream until ctx ends. It returns only ctx's error, or an
// error that retrying cannot mend.
func (r *Replica) Run(ctx context.Context) error {
	stream, err := r.waitForStream(ctx)
	if err != nil {
		return err
	}
	// With a usable snapshot, its state is loaded first and the stream replayed from
	// the sequence after it (see snapshot.go).
	start := r.loadSnapshot(ctx, stream.CachedInfo()) + 1
	if start > 1 && start > r.target.Load() {
		r.markReady()
	}
	var cc jetstream.ConsumeContext
	for cc == nil {
		if cc, err = r.consume(ctx, stream, start); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("stream consumer not created yet; retrying", "stream", r.opts.Stream, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
	defer func() { cc.Stop() }()

	purge := time.NewTicker(r.opts.PurgeEvery)
	defer purge.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if r.nc.IsConnected() {
				r.lastContact.Store(now.UnixNano())
			}
			if !r.ready.Load() {
				r.checkExpiredBacklog(ctx, stream)
			}
			if next, stalled := r.stalled(ctx, stream, now); stalled {
				// The ordered consumer recreates itself after a gap, but it retries
				// the same consumer name, which the cluster may have placed on a
				// server that is gone: it would wait for it forever. A new ordered
				// consumer, from the next sequence, gets a new name and placement.
				cc.Stop()
				if c, err := r.consume(ctx, stream, next); err == nil {
					cc = c
				} else if ctx.Err() == nil {
					r.log.Warn("stream consumer not recreated yet; retrying", "err", err)
				}
			}
		case now := <-purge.C:
			grace := int64(r.opts.Leeway / time.Second)
			jti, cutoff := r.set.Purge(now.Unix(), grace, int64(r.opts.MaxTokenLifetime/time.Second))
			r.purged.WithLabelValues("jti").Add(float64(jti))
			r.purged.WithLabelValues("cutoff").Add(float64(cutoff))
		}
	}
}

// consume starts an ordered consumer from stream sequence start. Its own resets are
// bounded, so that a reset cannot block for ever (nor block Stop, which waits for it);
// stalled catches a consumer that gave up.
func (r *Replica) consume(ctx context.Context, stream jetstream.Stream, start uint64) (jetstream.ConsumeContext, error) {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:   []string{r.opts.SubjectPrefix + ".>"},
		DeliverPolicy:    jetstream.DeliverAllPolicy,
		MaxResetAttempts: 3,
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", r.opts.Stream, err)
	}
	cc, err := cons.Consume(r.handle,
		jetstream.PullMaxMessages(2000),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, nats.ErrConnectionClosed) {
				r.log.Warn("stream consumer", "err", err)
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", r.opts.Stream, err)
	}
	r.progress.Store(time.Now().UnixNano())
	return cc, nil
}

// stalled reports, at most once per StallAfter, whether the consumer has delivered
// nothing for StallAfter while connected although the stream holds newer events; it
// returns the sequence to resume from.
func (r *Replica) stalled(ctx context.Context, stream jetstream.Stream, now time.Time) (uint64, bool) {
	lastProgress := r.progress.Load()
	if !r.nc.IsConnected() || now.Sub(time.Unix(0, lastProgress)) < r.opts.StallAfter {
		return 0, false
	}
	r.progress.Store(now.UnixNano())
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	info, err := stream.Info(c)
	if err != nil {
		return 0, false
	}
	last := r.lastSeq.Load()
	if info.State.LastSeq <= last || info.State.Msgs == 0 {
		return 0, false
	}
	// Stale since the last sign of progress; the next applied event clears it.
	r.behindSince.CompareAndSwap(0, lastProgress)
	r.log.Warn("stream consumer stalled; recreating it", "last_sequence", last, "stream_last_sequence", info.State.LastSeq)
	return last + 1, true
}

// waitForStream waits until the stream can be read, and records the sequence the
// replica must reach before it is ready.
func (r *Replica) waitForStream(ctx context.Context) (jetstream.Stream, error) {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err := r.js.Stream(c, r.opts.Stream)
		cancel()
		if err == nil {
			info := stream.CachedInfo()
			r.target.Store(info.State.LastSeq)
			r.log.Info("replaying revocation stream", "stream", r.opts.Stream,
				"messages", info.State.Msgs, "last_sequence", info.State.LastSeq)
			if info.State.Msgs == 0 {
				r.markReady()
			}
			return stream, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if attempt%10 == 0 {
			r.log.Warn("revocation stream not reachable yet; not ready", "stream", r.opts.Stream, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// checkExpiredBacklog makes the replica ready when the messages it waits for have
// left the stream (MaxAge) before they could be delivered: nothing is left to apply.
func (r *Replica) checkExpiredBacklog(ctx context.Context, stream jetstream.Stream) {
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := stream.Info(c)
	if err != nil {
		return
	}
	if info.State.Msgs == 0 || info.State.FirstSeq > r.target.Load() {
		r.markReady()
	}
}

func (r *Replica) markReady() {
	if r.ready.CompareAndSwap(false, true) {
		close(r.readyCh)
		jti, cutoff := r.set.Len()
		r.log.Info("replica ready", "last_sequence", r.lastSeq.Load(), "jti_entries", jti, "cutoff_entries", cutoff)
	}
}

func (r *Replica) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Warn("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	seq := meta.Sequence.Stream
	now := time.Now()
	r.Apply(msg.Data(), seq, now)
	r.progress.Store(now.UnixNano())
	if r.behindSince.Load() != 0 {
		r.behindSince.Store(0)
	}
	// A replaced consumer may still hand over a message it had: never go back.
	for last := r.lastSeq.Load(); seq > last; last = r.lastSeq.Load() {
		if r.lastSeq.CompareAndSwap(last, seq) {
			break
		}
	}
	if !r.ready.Load() && (seq >= r.target.Load() || meta.NumPending == 0) {
		r.markReady()
	}
}

// Apply decodes one event payload and applies it to the set. A bad event is counted,
// logged without its content, and skipped. seq is for the log only.
func (r *Replica) Apply(payload []byte, seq uint64, now time.Time) {
	ev, err := decodeEvent(payload, r.opts.CutoffClaims)
	if err != nil {
		reason := event.Reason(err)
		r.rejected.WithLabelValues(reason).Inc()
		r.log.Warn("revocation event rejected", "sequence", seq, "reason", reason, "err", errSummary(err))
		return
	}
	grace := int64(r.opts.Leeway / time.Second)
	switch ev.Type {
	case event.TypeJTI:
		if ev.Exp+grace < now.Unix() {
			// The token has expired: no request can carry it any more.
			r.rejected.WithLabelValues("expired").Inc()
			return
		}
		r.set.AddJTI(r.set.JTIKey(ev.Iss, ev.JTI), ev.Exp)
		r.appliedJTI.Inc()
	case event.TypeCutoff:
		if ev.NotBefore+int64(r.opts.MaxTokenLifetime/time.Second)+grace < now.Unix() {
			r.rejected.WithLabelValues("expired").Inc()
			return
		}
		r.set.AddCutoff(r.set.CutoffKey(ev.Iss, ev.Claim, ev.Value), ev.NotBefore)
		r.appliedCutoff.Inc()
	}
}

// errSummary keeps log lines short and free of event content beyond what the error says.
func errSummary(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

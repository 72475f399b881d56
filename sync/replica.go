// Package sync keeps a blocklist replica in step with the revocation stream: it replays
// the JetStream stream from its first message, then follows it live, with an ordered
// consumer that cannot skip a message (the client recreates it from the last delivered
// sequence after any gap, reconnect or server restart).
//
// A supervisor checks the stream and the consumer every Options.CheckEvery and keeps the
// promise visible: a stream replaced under the replica (deleted and created again, or
// restored to an older state) is replayed from its start, and until the replica has
// caught up again it is not ready; a consumer that stopped delivering while events are
// pending is replaced; a stream that is gone, a consumer that cannot be created, a
// revocation window shorter than the token lifetime and a full replica all show as
// staleness or as not ready, never as silence.
//
// The package name clashes with the standard library's; import it as revsync.
package sync

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/stream"
)

// DefaultMaxEntries bounds a replica's live entries unless Options.MaxEntries says
// otherwise: about 260 MB of RSS, inside the chart's 512 MiB limit, four times the
// million entries the design is built for. It is the stream's own default message
// limit, so a flood is refused by the stream first.
const DefaultMaxEntries = stream.DefaultMaxMsgs

// Options configure a Replica.
type Options struct {
	Stream           string        // default REVOCATIONS
	SubjectPrefix    string        // default revocations
	CutoffClaims     []string      // claims a cutoff may name besides sub, sid, client_id
	MaxTokenLifetime time.Duration // cutoffs are kept this long past not_before; default 24h
	Leeway           time.Duration // entries are kept this long past their last use
	PurgeEvery       time.Duration // default 10s
	SnapshotBucket   string        // Object Store bucket holding a snapshot to load before replaying; empty: none
	// SnapshotPublicKeys are the Ed25519 keys a snapshot must be signed with (any of
	// them: two during a rotation). With a bucket and no key no snapshot is used.
	SnapshotPublicKeys []ed25519.PublicKey
	StallAfter         time.Duration // events pending and none applied this long: new consumer; default 10s
	CheckEvery         time.Duration // how often the stream and the consumer are checked; default 1s
	// IdleCheckEvery is how often they are checked in the steady state (ready, caught
	// up, following, connected, not on a mirror, nothing unusual for IdleCheckEvery);
	// default 5s, never less than CheckEvery nor more than StallAfter/2. What changes
	// the steady state (a consumer error, a reconnect, a consumer the client recreated)
	// brings a check at once; see the package doc.
	IdleCheckEvery time.Duration
	// MaxEntries bounds the live entries (jti and cutoff together); default
	// DefaultMaxEntries. A replica that reaches it stops adding entries, says it is not
	// ready (it can no longer promise to deny every revoked token) and counts each
	// event it could not keep as rejected{reason="replica_full"}; once purging has made
	// room it replays the stream from its start.
	MaxEntries int
	Now        func() time.Time // the clock; default time.Now
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Replica applies the stream's events to a blocklist.Set.
type Replica struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	set  *blocklist.Set
	opts Options
	log  *slog.Logger
	now  func() time.Time
	// retention is what stays live: events past it are skipped, entries past it purged.
	retention blocklist.Retention

	target      atomic.Uint64 // the stream's last sequence when the replica (re)started replaying it
	lastSeq     atomic.Uint64 // last stream sequence applied
	ready       atomic.Bool   // caught up with the stream since the last (re)start
	readyOnce   gosync.Once
	endReplayGC func() // ends the first replay's GC setting (replay.go)
	readyCh     chan struct{}
	full        atomic.Bool  // MaxEntries reached: entries were not kept
	windowShort atomic.Bool  // the stream's MaxAge is shorter than the revocation window
	lastContact atomic.Int64 // unix nanoseconds when NATS was last known reachable
	staleSince  atomic.Int64 // unix nanoseconds since the replica stopped following the stream; 0: following
	// originSeq is, on a mirror behind its origin, the sequence the origin had reached
	// as the mirror last reported (its last sequence plus its lag); 0 otherwise. The
	// replica is not ready until a check finds the mirror holding it and every message
	// of the mirror applied (caughtUp).
	originSeq atomic.Uint64

	// Owned by Run's goroutine.
	stream     jetstream.Stream
	created    time.Time // the incarnation of the stream being followed
	cutOff     bool      // the stream is a mirror that has lost its origin
	unheard    time.Time // since when the mirror has reported no contact at all; zero: it has
	lagless    int       // checks in a row at which the mirror, in contact, reported no lag
	mirrorLast uint64    // the mirror's last sequence at the last check
	cur        *follower
	epoch      atomic.Uint64 // the current follower's; messages of older ones are ignored
	// caughtUpAt is the stream's last sequence when its consumer last reported every
	// message up to it applied: while the stream's last sequence stays there (messages
	// deleted at its end, or of other subjects), nothing can be pending.
	caughtUpAt uint64
	settled    bool      // the last check found the replica caught up with a stream that is no mirror
	disturbed  time.Time // when something last told of a change (wake, a reconnect, a failed check)
	reconnects uint64    // the connection's reconnects as last seen
	// wake asks Run for a check at once: the consumer reported an error, or a message
	// came from a consumer the client recreated on its own.
	wake    chan struct{}
	retired gosync.WaitGroup

	applied, rejected, clamped, purged *prometheus.CounterVec
	// appliedJTI and appliedCutoff are applied's two series, resolved once: a replay
	// applies every event of the stream, and a label lookup per event shows.
	appliedJTI, appliedCutoff prometheus.Counter
	resets                    prometheus.Counter
	snapshotLoads             *prometheus.CounterVec
	propagation               prometheus.Histogram
	pending                   atomic.Uint64 // the consumer's pending count at the last message or check
}

// follower is one ordered consumer and what the supervisor knows of it.
type follower struct {
	cons     jetstream.Consumer
	cc       jetstream.ConsumeContext
	name     atomic.Pointer[string] // the server-side consumer's name, as last seen
	handled  atomic.Uint64          // messages this follower handled
	seen     uint64                 // handled at the last check
	progress time.Time              // when handled last moved (or the follower started)
	healthy  time.Time              // when it was last known to follow: caught up, or its consumer info read
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
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = time.Second
	}
	if opts.IdleCheckEvery <= 0 {
		opts.IdleCheckEvery = 5 * time.Second
	}
	// A stall is judged from the last check that found the replica caught up: checks
	// further apart than half of StallAfter would let the first check that sees events
	// pending judge them stalled already.
	opts.IdleCheckEvery = max(min(opts.IdleCheckEvery, opts.StallAfter/2), opts.CheckEvery)
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	if opts.Now == nil {
		opts.Now = time.Now
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
	r := &Replica{nc: nc, js: js, set: set, opts: opts, log: opts.Log, now: opts.Now, readyCh: make(chan struct{}), wake: make(chan struct{}, 1),
		retention: blocklist.Retention{Lifetime: opts.MaxTokenLifetime, Leeway: opts.Leeway}}
	r.lastContact.Store(r.now().UnixNano())
	r.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_events_applied_total", Help: "Revocation events applied to the replica, by type.",
	}, []string{"type"})
	r.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_events_rejected_total", Help: "Revocation events skipped, by reason (malformed, too_large, unknown_type, invalid, expired, replica_full).",
	}, []string{"reason"})
	r.clamped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_events_clamped_total", Help: "Revocation events applied with a time bounded (not_before later than the stream stored the event; exp past the revocation window), by field.",
	}, []string{"field"})
	r.purged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_blocklist_purged_total", Help: "Blocklist entries removed once no live token can match them.",
	}, []string{"kind"})
	r.resets = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "revoked_sync_stream_resets_total", Help: "Times the stream was found replaced (deleted and created again, or restored to an older state) or the replica had overflowed, and was replayed from its start.",
	})
	r.propagation = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "revoked_sync_propagation_seconds",
		Help: "For each event applied live (not while replaying), the time from the stream storing it to the replica applying it. Compares the NATS server's clock with this host's: skew shows as an offset.",
		// 1 ms to 10 s.
		Buckets: []float64{.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	r.snapshotLoads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_snapshot_loads_total",
		Help: "Snapshot loads at start, by result (ok, missing, no_key, old_format, bad_signature, other_stream, malformed, error); any result but ok means a full replay.",
	}, []string{"result"})
	if opts.SnapshotBucket != "" {
		for _, res := range snapshotResults {
			r.snapshotLoads.WithLabelValues(res)
		}
	}
	r.appliedJTI = r.applied.WithLabelValues(event.TypeJTI)
	r.appliedCutoff = r.applied.WithLabelValues(event.TypeCutoff)
	for _, reason := range []string{"malformed", "too_large", "unknown_type", "invalid", "expired", "replica_full"} {
		r.rejected.WithLabelValues(reason)
	}
	for _, field := range []string{"exp", "not_before"} {
		r.clamped.WithLabelValues(field)
	}
	opts.Registerer.MustRegister(r.applied, r.rejected, r.clamped, r.purged, r.resets, r.propagation, r.snapshotLoads,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_lag_messages", Help: "Events in the stream the replica has not applied yet, from its consumer's pending count.",
		}, func() float64 { return float64(r.pending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_last_sequence", Help: "Last stream sequence applied to the replica.",
		}, func() float64 { return float64(r.lastSeq.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_connected", Help: "1 while connected to NATS, else 0.",
		}, func() float64 { return b2f(nc.IsConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_ready", Help: "1 while the replica is caught up with the stream and can keep every revocation (not full, window long enough).",
		}, func() float64 { return b2f(r.Ready()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_sync_staleness_seconds", Help: "How long the replica has not been following the stream (NATS unreachable, the stream gone or replaced, its consumer missing or stalled); 0 while it follows.",
		}, func() float64 { return r.Staleness(r.now()).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_blocklist_capacity", Help: "The most live entries the replica keeps (--max-entries).",
		}, func() float64 { return float64(opts.MaxEntries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "revoked_blocklist_memory_bytes", Help: "Memory the blocklist's tables take, outside the Go heap (not in go_memstats_*).",
		}, func() float64 { return float64(set.SlotBytes()) }),
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

// Ready reports whether the replica can keep the promise: it has applied every event
// the stream held when it started (or when it last found the stream replaced; on a
// mirror, every event its origin held, as the mirror's lag told), it
// has dropped no entry for want of room, and the stream keeps events at least as long
// as a token lives. A disconnected replica stays ready; staleness says how long it
// has not followed.
func (r *Replica) Ready() bool {
	return r.ready.Load() && !r.full.Load() && !r.windowShort.Load()
}

// NotReadyReason says why Ready is false; empty when it is true.
func (r *Replica) NotReadyReason() string {
	switch {
	case r.full.Load():
		return fmt.Sprintf("replica full (%d entries, --max-entries)", r.opts.MaxEntries)
	case r.windowShort.Load():
		return "stream MaxAge shorter than --max-token-lifetime + --leeway"
	case !r.ready.Load():
		return "replica not caught up with the stream"
	}
	return ""
}

// ReadyC is closed once the replica is first caught up with the stream.
func (r *Replica) ReadyC() <-chan struct{} { return r.readyCh }

// LastSequence is the last stream sequence applied.
func (r *Replica) LastSequence() uint64 { return r.lastSeq.Load() }

// Connected reports whether the NATS connection is up.
func (r *Replica) Connected() bool { return r.nc.IsConnected() }

// Staleness is how long the replica has not been following the stream: since NATS
// became unreachable, or since the supervisor found it not following (the stream gone
// or replaced, no consumer, a consumer stalled with events pending); 0 while it follows.
func (r *Replica) Staleness(now time.Time) time.Duration {
	var d time.Duration
	if !r.nc.IsConnected() {
		d = now.Sub(time.Unix(0, r.lastContact.Load()))
	}
	if s := r.staleSince.Load(); s != 0 {
		d = max(d, now.Sub(time.Unix(0, s)))
	}
	return max(d, 0)
}

// markStale records that the replica stopped following at t, unless it already had.
func (r *Replica) markStale(t time.Time) { r.staleSince.CompareAndSwap(0, t.UnixNano()) }

// Run replays and follows the stream until ctx ends. It returns only ctx's error, or an
// error that retrying cannot mend.
func (r *Replica) Run(ctx context.Context) error {
	info, err := r.waitForStream(ctx)
	if err != nil {
		return err
	}
	r.created = info.Created
	r.checkWindow(info)
	// A mirror already cut off (silent past the threshold, or not heard from at all)
	// makes the replica stale before it can be ready: the first check comes after the
	// replay, and a stale policy of deny would let checks through in between.
	r.checkMirror(info, true, r.now())
	// With a usable snapshot, its state is loaded first and the stream replayed from
	// the sequence after it (see snapshot.go).
	r.endReplayGC = beginReplayGC()
	defer r.endReplayGC() // never ready
	r.loadSnapshot(ctx, info)
	r.follow(ctx, r.lastSeq.Load()+1)
	defer r.retired.Wait()
	defer func() { r.unfollow() }()

	purge := time.NewTicker(r.opts.PurgeEvery)
	defer purge.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastCheck time.Time // zero: check at once; an empty stream is ready without an event
	woken := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.wake:
			woken = true // checked at the next tick, so that a burst of reports makes one check
		case <-tick.C:
			now := r.now()
			if r.nc.IsConnected() {
				r.lastContact.Store(now.UnixNano())
			} else {
				r.disturbed = now
			}
			if n := r.nc.Stats().Reconnects; n != r.reconnects {
				// Reconnected, perhaps between two ticks: whatever changed meanwhile
				// (a server restarted on an older store, the stream replaced) is seen now.
				r.reconnects, woken = n, true
			}
			if woken {
				r.disturbed = now
			}
			// Triggered checks are at least a quarter of CheckEvery apart, so that a
			// consumer failing over and over cannot turn into a flood of requests.
			due := !now.Before(lastCheck.Add(r.checkInterval(now))) ||
				(woken && !now.Before(lastCheck.Add(r.opts.CheckEvery/4)))
			if due {
				woken = false
				r.check(ctx, now)
				lastCheck = now
			}
		case <-purge.C:
			now := r.now()
			jti, cutoff := r.set.Purge(now.Unix(), r.retention)
			r.purged.WithLabelValues("jti").Add(float64(jti))
			r.purged.WithLabelValues("cutoff").Add(float64(cutoff))
			if r.full.Load() && r.entries() < r.opts.MaxEntries*9/10 {
				// Events were dropped while full: only a replay from the start finds
				// them again. Applying the others twice changes nothing.
				r.log.Warn("replica has room again; replaying the stream to recover the entries it could not keep")
				r.full.Store(false)
				r.target.Store(r.lastSeq.Load())
				r.restart(ctx, now, "replica overflowed")
			}
		}
	}
}

func (r *Replica) entries() int {
	jti, cutoff := r.set.Len()
	return jti + cutoff
}

// poke asks Run for a check at once.
func (r *Replica) poke() {
	select {
	case r.wake <- struct{}{}:
	default: // one is asked already
	}
}

// checkInterval is the time from one check to the next: IdleCheckEvery in the steady
// state, CheckEvery in any other. Steady: the last check found the replica caught up
// with a stream that is no mirror (whose silence only polling sees), and since then it
// is ready, not stale, connected, has nothing pending, and nothing has disturbed it
// for IdleCheckEvery.
func (r *Replica) checkInterval(now time.Time) time.Duration {
	if r.settled && r.cur != nil && r.Ready() && r.staleSince.Load() == 0 && r.nc.IsConnected() &&
		r.pending.Load() == 0 && now.Sub(r.disturbed) >= r.opts.IdleCheckEvery {
		return r.opts.IdleCheckEvery
	}
	return r.opts.CheckEvery
}

// check compares the stream and the consumer with what the replica has applied.
func (r *Replica) check(ctx context.Context, now time.Time) {
	r.settled = false
	if !r.nc.IsConnected() {
		return // lastContact measures this staleness
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// Read before asking: the stream held at least this much when it answered, while
	// events applied during the request may be past its answer.
	applied := r.lastSeq.Load()
	info, err := r.stream.Info(c)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if r.staleSince.Load() == 0 {
			r.log.Error("revocation stream not found: the replica no longer follows it", "stream", r.opts.Stream)
		}
		r.markStale(now)
		return
	case err != nil:
		r.disturbed = now
		if ctx.Err() == nil {
			r.log.Warn("stream info", "stream", r.opts.Stream, "err", err)
		}
		if r.cur != nil && now.Sub(r.cur.healthy) >= r.opts.StallAfter {
			r.markStale(r.cur.healthy)
		}
		return
	}
	r.checkWindow(info)
	r.checkMirror(info, false, now)
	if !info.Created.Equal(r.created) || info.State.LastSeq < applied {
		// Deleted and created again, or restored from an older backup: the new
		// stream's sequences are not the ones applied. Keep the set (revocations only
		// grow) and replay the new stream from its start.
		r.log.Error("revocation stream replaced; replaying it from its start, not ready until caught up",
			"stream", r.opts.Stream, "created", info.Created, "was_created", r.created,
			"last_sequence", info.State.LastSeq, "applied_sequence", applied)
		r.created = info.Created
		r.target.Store(info.State.LastSeq)
		r.restart(ctx, now, "stream replaced")
		return
	}
	f := r.cur
	if f == nil {
		r.follow(ctx, r.lastSeq.Load()+1)
		return
	}
	if info.State.Msgs == 0 || info.State.LastSeq <= max(r.lastSeq.Load(), r.caughtUpAt) {
		r.caughtUp(f, now) // nothing can be pending
		r.settled = info.Mirror == nil
		return
	}
	handled := f.handled.Load()
	if handled != f.seen && r.pending.Load() > 0 {
		// Messages flow, and the last one said more are pending: the consumer follows,
		// and its info would say nothing more.
		f.seen, f.progress, f.healthy = handled, now, now
		return
	}
	ci, err := r.consumerInfo(c, f)
	if err != nil {
		// The ordered consumer recreates itself after a gap; one that cannot has
		// given up, or waits for a server that is gone.
		if now.Sub(f.healthy) >= r.opts.StallAfter {
			r.replace(ctx, f, now, "consumer lost", err)
		}
		return
	}
	f.healthy = now
	if handled != f.seen {
		f.seen, f.progress = handled, now
	}
	r.pending.Store(ci.NumPending)
	if ci.NumPending == 0 && ci.Delivered.Stream <= r.lastSeq.Load() {
		// Judged by the consumer, not by the stream's last sequence: a deleted last
		// message leaves the stream's last sequence ahead of every message there is.
		// Nothing pending, and every message it delivered applied (none waiting in the
		// client's buffer, even after the ordered consumer recreated itself). Every
		// message up to the sequence the stream info gave, read before, is applied.
		r.caughtUpAt = info.State.LastSeq
		r.caughtUp(f, now)
		r.settled = info.Mirror == nil
		return
	}
	if now.Sub(f.progress) >= r.opts.StallAfter {
		r.replace(ctx, f, now, "consumer stalled", fmt.Errorf("%d events pending, none applied for %s", ci.NumPending, now.Sub(f.progress).Round(time.Second)))
	}
}

// consumerInfo reads the follower's consumer info by name, not through the ordered
// consumer, whose methods wait while it recreates itself (seconds, with retries).
func (r *Replica) consumerInfo(ctx context.Context, f *follower) (*jetstream.ConsumerInfo, error) {
	name := f.name.Load()
	if name == nil {
		return nil, jetstream.ErrConsumerNotFound
	}
	cons, err := r.js.Consumer(ctx, r.opts.Stream, *name)
	if err != nil {
		return nil, err
	}
	return cons.CachedInfo(), nil
}

// caughtUp records that the replica has applied everything the stream holds.
func (r *Replica) caughtUp(f *follower, now time.Time) {
	// seen too: a stall is judged from here, by messages handled after it.
	f.progress, f.healthy, f.seen = now, now, f.handled.Load()
	r.pending.Store(0)
	if r.originSeq.Load() != 0 && r.originCopied() {
		r.originSeq.Store(0) // everything the mirror's origin held is in the mirror, and applied
	}
	r.markReady()
	if r.cutOff {
		return // caught up with a mirror that no longer follows its origin
	}
	if r.staleSince.Swap(0) != 0 {
		r.log.Info("replica follows the stream again", "last_sequence", r.lastSeq.Load())
	}
}

// checkMirror makes a replica of a mirror stale while the mirror has lost contact
// with its origin (CONTRACT section 3): events acknowledged by the origin do not reach
// it. atStart is the check Run makes before the replay (see judgeMirror).
func (r *Replica) checkMirror(info *jetstream.StreamInfo, atStart bool, now time.Time) {
	m := info.Mirror
	c := judgeMirror(m, r.unheard, atStart, now)
	r.unheard = c.unheard
	if c.heard {
		r.followOrigin(info.State.LastSeq, m.Lag)
	}
	if c.cut {
		r.markStale(c.since)
	}
	if c.cut != r.cutOff {
		r.cutOff = c.cut
		if c.cut {
			silence := "unknown: not heard from since its server started"
			if c.heard {
				silence = m.Active.Round(time.Millisecond).String()
			}
			r.log.Error("the stream is a mirror cut off from its origin; stale", "stream", r.opts.Stream, "origin", m.Name, "silent_for", silence)
		} else {
			r.log.Info("the mirror hears from its origin again", "stream", r.opts.Stream)
		}
	}
}

// mirrorContact is what one stream info tells of a mirror's contact with its origin.
type mirrorContact struct {
	since   time.Time // since when the mirror has not heard from its origin; zero: not a mirror
	unheard time.Time // Replica.unheard after this check
	heard   bool      // the mirror has heard from its origin since its server started: its Lag means something
	cut     bool      // silent for stream.MirrorSilence or longer: cut off
}

// judgeMirror judges a mirror's contact with its origin from its source info m (nil:
// the stream is no mirror), unheard (since when earlier checks have seen it report no
// contact at all; zero: they have not) and whether this is the check at Run's start.
//
// Active is the time since the mirror last heard from its origin, or -1 when it has
// not heard from it since the stream was started on its server (nats-server keeps 0 in
// sourceInfo.last until its mirror consumer is set up). That happens to a live mirror
// too, for a moment: when it is created, when its server restarts, when another server
// of a cluster becomes its leader. During the run it counts once it lasts, as silence
// does. At start it counts at once: the mirror may have been cut off for any time (a
// server restarted while its link to the origin is down), and a replica that caught
// up with it would be ready, and not stale, on a copy missing what the origin
// acknowledged. It is counted as silence that has just reached the threshold, the least
// a cut-off mirror has been silent, so that a --stale-policy deny with a
// --max-staleness below it never lets a check through; a mirror that was only setting
// up its link is heard at the next check, which clears it.
func judgeMirror(m *jetstream.StreamSourceInfo, unheard time.Time, atStart bool, now time.Time) mirrorContact {
	var c mirrorContact
	switch {
	case m == nil:
		return c
	case m.Active >= 0:
		c.heard = true
		c.since = now.Add(-m.Active)
	case !unheard.IsZero():
		c.since, c.unheard = unheard, unheard
	case atStart:
		c.since = now.Add(-stream.MirrorSilence)
		c.unheard = c.since
	default:
		c.since, c.unheard = now, now
	}
	c.cut = now.Sub(c.since) >= stream.MirrorSilence
	return c
}

// followOrigin records what a mirror in contact with its origin reports: a lag (what
// the origin holds beyond it) raises originSeq, which only caughtUp drops.
func (r *Replica) followOrigin(mirrorLast, lag uint64) {
	r.mirrorLast = mirrorLast
	if lag == 0 {
		r.lagless++
		return
	}
	r.lagless = 0
	if target := mirrorLast + lag; target > r.originSeq.Load() {
		r.originSeq.Store(target)
	}
}

// originCopied reports, with the replica caught up with the mirror, whether the mirror
// has copied what its origin held: it holds originSeq, or has reported no lag at two
// checks in a row (a single report of none comes from a mirror setting its consumer up
// again mid-copy; a lag read while the mirror stores may be off by a message or two).
func (r *Replica) originCopied() bool {
	return r.mirrorLast >= r.originSeq.Load() || r.lagless >= 2
}

// checkWindow flags a stream that forgets events before the tokens they revoke expire:
// a replica started later would never see them.
func (r *Replica) checkWindow(info *jetstream.StreamInfo) {
	need := stream.MinMaxAge(r.opts.MaxTokenLifetime, r.opts.Leeway)
	short := !stream.CoversWindow(info.Config.MaxAge, r.opts.MaxTokenLifetime, r.opts.Leeway)
	if r.windowShort.Swap(short) != short {
		if short {
			r.log.Error("stream MaxAge is shorter than the revocation window: revocations would leave the stream while the tokens they revoke still live; not ready",
				"stream", r.opts.Stream, "max_age", info.Config.MaxAge.String(), "needed", need.String(),
				"fix", "revokectl stream init --max-token-lifetime <the same as the sidecars'>")
		} else {
			r.log.Info("stream MaxAge covers the revocation window", "max_age", info.Config.MaxAge.String())
		}
	}
}

// follow starts an ordered consumer from stream sequence start. On failure the
// replica is stale until the next check succeeds.
func (r *Replica) follow(ctx context.Context, start uint64) {
	now := r.now()
	f := &follower{progress: now, healthy: now}
	epoch := r.epoch.Add(1)
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: consumerFilter(r.stream.CachedInfo().Config, r.opts.SubjectPrefix),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// Its own resets are bounded, so that a reset cannot block for ever (nor
		// block Stop, which waits for it); check catches a consumer that gave up.
		MaxResetAttempts: 3,
		// A consumer the replica lost track of goes away soon on its own.
		InactiveThreshold: time.Minute,
	}
	if start > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	fail := func(err error) {
		if ctx.Err() == nil {
			r.log.Warn("stream consumer not created yet; retrying", "stream", r.opts.Stream, "err", err)
		}
		r.markStale(now)
	}
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := r.stream.OrderedConsumer(c, cfg)
	if err != nil {
		fail(fmt.Errorf("ordered consumer on %s: %w", r.opts.Stream, err))
		return
	}
	f.cons = cons
	f.cc, err = cons.Consume(func(msg jetstream.Msg) { r.handle(msg, f, epoch) },
		jetstream.PullMaxMessages(2000),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, jetstream.ErrConnectionClosed) {
				return
			}
			r.log.Warn("stream consumer", "err", err)
			// The consumer deleted (with its stream, or by an operator), heartbeats
			// lost, no server answering: what the next check would find, find now.
			if r.epoch.Load() == epoch {
				r.poke()
			}
		}))
	if err != nil {
		fail(fmt.Errorf("consume %s: %w", r.opts.Stream, err))
		return
	}
	if ci := cons.CachedInfo(); ci != nil {
		f.name.Store(&ci.Name)
	}
	r.cur = f
}

// unfollow stops the current consumer and deletes it on the server, so that replaced
// consumers do not linger there. Its messages are ignored from now on; stopping it
// waits for a reset it may be in (seconds), so that happens aside, and Run waits for it
// only when it returns.
func (r *Replica) unfollow() {
	f := r.cur
	if f == nil {
		return
	}
	r.cur = nil
	r.epoch.Add(1)
	r.retired.Go(func() {
		f.cc.Stop()
		if name := f.name.Load(); name != nil && r.nc.IsConnected() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = r.js.DeleteConsumer(ctx, r.opts.Stream, *name)
		}
	})
}

// replace swaps a consumer that stopped delivering for a new one from the next
// sequence. The ordered consumer recreates itself after a gap, but it retries the same
// consumer name, which the cluster may have placed on a server that is gone: it would
// wait for it forever. A new ordered consumer gets a new name and placement.
func (r *Replica) replace(ctx context.Context, f *follower, now time.Time, why string, err error) {
	r.markStale(f.progress)
	r.log.Warn("stream "+why+"; recreating the consumer", "last_sequence", r.lastSeq.Load(), "err", err)
	r.unfollow()
	r.follow(ctx, r.lastSeq.Load()+1)
}

// restart replays the stream from its first message: after a reset, or an overflow.
// The replica is not ready, and stale, until it has caught up again.
func (r *Replica) restart(ctx context.Context, now time.Time, why string) {
	r.resets.Inc()
	r.unfollow()
	r.ready.Store(false)
	r.markStale(now)
	r.lastSeq.Store(0)
	r.caughtUpAt = 0
	r.log.Warn("replaying the stream from its start", "why", why)
	r.follow(ctx, 1)
}

// waitForStream waits until the stream can be read, and records the sequence the
// replica must reach before it is ready.
func (r *Replica) waitForStream(ctx context.Context) (*jetstream.StreamInfo, error) {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err := r.js.Stream(c, r.opts.Stream)
		cancel()
		if err == nil {
			r.stream = stream
			info := stream.CachedInfo()
			r.target.Store(info.State.LastSeq)
			r.log.Info("replaying revocation stream", "stream", r.opts.Stream,
				"messages", info.State.Msgs, "last_sequence", info.State.LastSeq)
			return info, nil
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

func (r *Replica) markReady() {
	if r.originSeq.Load() != 0 {
		return // a mirror still copying its origin's events: not caught up with the origin
	}
	if r.ready.CompareAndSwap(false, true) {
		r.readyOnce.Do(func() {
			close(r.readyCh)
			if r.endReplayGC != nil {
				r.endReplayGC()
			}
		})
		jti, cutoff := r.set.Len()
		r.log.Info("replica caught up with the stream", "last_sequence", r.lastSeq.Load(), "jti_entries", jti, "cutoff_entries", cutoff)
	}
}

func (r *Replica) handle(msg jetstream.Msg, f *follower, epoch uint64) {
	if r.epoch.Load() != epoch {
		return // a replaced consumer's message: its sequences may be another stream's
	}
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Warn("message without JetStream metadata", "subject", msg.Subject(), "err", err)
		return
	}
	seq := meta.Sequence.Stream
	if name := f.name.Load(); name == nil || *name != meta.Consumer {
		f.name.Store(&meta.Consumer)
		if name != nil {
			// The ordered consumer recreated itself: after a gap, a lost heartbeat, or
			// its consumer deleted, perhaps with the stream, whose new incarnation it
			// now reads from the old sequence on. Check at once.
			r.poke()
		}
	}
	now := r.now()
	live := r.ready.Load()
	revocation := r.revocationSubject(msg.Subject())
	if revocation {
		r.Apply(msg.Data(), seq, meta.Timestamp, now)
	} // else: another subject, which a consumer without filter delivers (consumerFilter)
	f.handled.Add(1)
	r.pending.Store(meta.NumPending)
	if live && revocation {
		r.propagation.Observe(max(now.Sub(meta.Timestamp), 0).Seconds())
	}
	// An ordered consumer delivers in order: never go back.
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
// logged without its content, and skipped. stored is when the stream stored it (zero
// if unknown); seq is for the log only.
func (r *Replica) Apply(payload []byte, seq uint64, stored, now time.Time) {
	ev, err := decodeEventView(payload, r.opts.CutoffClaims)
	if err != nil {
		reason := event.Reason(err)
		r.rejected.WithLabelValues(reason).Inc()
		r.log.Warn("revocation event rejected", "sequence", seq, "reason", reason, "err", errSummary(err))
		return
	}
	if ev.Type == event.TypeCutoff {
		if nb := EffectiveNotBefore(ev.NotBefore, stored); nb != ev.NotBefore {
			r.clamped.WithLabelValues("not_before").Inc()
			r.log.Warn("cutoff not_before far later than the stream stored the event; bounded",
				"sequence", seq, "not_before", ev.NotBefore, "stored", stored.Unix())
			ev.NotBefore = nb
		}
	}
	if reason := r.applyEvent(&ev, now); reason != "" {
		r.rejected.WithLabelValues(reason).Inc()
		if reason != "expired" {
			r.log.Warn("revocation event not kept", "sequence", seq, "reason", reason)
		}
	}
}

// EffectiveNotBefore is the not_before a cutoff stored by the stream at stored is
// enforced with: never later than stream.CutoffAhead past that moment. A cutoff far in
// the future would revoke tokens issued long after it was published, which a replica
// started once the event has left the stream (MaxAge after stored) could not know of:
// running and new replicas would disagree, and a user would be locked out for ever on
// some pods. The stream's MaxAge covers the CutoffAhead. Snapshots record cutoffs
// bounded the same way. A zero stored leaves not_before as it is.
func EffectiveNotBefore(notBefore int64, stored time.Time) int64 {
	if limit := stored.Add(stream.CutoffAhead).Unix(); !stored.IsZero() && notBefore > limit {
		return limit
	}
	return notBefore
}

// applyEvent applies a validated event (from the stream or a snapshot entry) at now,
// under the replica's rules: an entry no live token can match is skipped ("expired"),
// a jti entry's exp is bounded by the revocation window, and no new entry is added
// beyond MaxEntries ("replica_full"). It returns the reason an event was not kept, or
// "".
func (r *Replica) applyEvent(ev *event.Event, now time.Time) string {
	switch ev.Type {
	case event.TypeJTI:
		if !r.retention.JTILive(ev.Exp, now.Unix()) {
			return "expired" // no request can carry the token any more
		}
		exp := ev.Exp
		if limit := r.retention.MaxExp(now.Unix()); exp > limit {
			// No token the verifier accepts lives past this (exp - iat within the
			// window, iat not in the future): keeping the entry longer only costs
			// memory, and a far exp would never be purged.
			r.clamped.WithLabelValues("exp").Inc()
			exp = limit
		}
		k := r.set.JTIKey(ev.Iss, ev.JTI)
		if !r.room() && !r.set.HasJTI(k) {
			return "replica_full"
		}
		r.set.AddJTI(k, exp)
		r.appliedJTI.Inc()
	case event.TypeCutoff:
		if !r.retention.CutoffLive(ev.NotBefore, now.Unix()) {
			return "expired"
		}
		k := r.set.ClientCutoffKey(ev.Iss, ev.Claim, ev.Value, ev.ClientID)
		if !r.room() {
			if _, ok := r.set.Cutoff(k); !ok {
				return "replica_full"
			}
		}
		r.set.AddCutoff(k, ev.NotBefore)
		r.appliedCutoff.Inc()
	}
	return ""
}

// room reports whether a new entry fits; the first time it does not, the replica says
// so loudly and stops being ready.
func (r *Replica) room() bool {
	if r.entries() < r.opts.MaxEntries {
		return true
	}
	if !r.full.Swap(true) {
		r.log.Error("replica full: revocation events are no longer kept; not ready",
			"max_entries", r.opts.MaxEntries, "fix", "raise --max-entries (and the memory limit), or find the publisher flooding the stream")
	}
	return false
}

// errSummary keeps log lines short and free of event content beyond what the error says.
func errSummary(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

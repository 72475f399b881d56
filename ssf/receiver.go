package ssf

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/filewatch"
	"github.com/revoked-dev/revoked/internal/secretfile"
	"github.com/revoked-dev/revoked/jwtkeys"
	"github.com/revoked-dev/revoked/publish"
)

// Publisher publishes contract events and waits for the stream's ack; a
// *publish.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, ev event.Event) (publish.Result, error)
	Payload(ev *event.Event) ([]byte, error)
}

// Options tune a Receiver. Zero fields take the defaults.
type Options struct {
	// MaxTokenLifetime is the exp a jwt_id subject's entry gets from now, and the
	// default max_age of a SET; default 24h (`revoked ingest --max-token-lifetime`).
	MaxTokenLifetime time.Duration
	Log              *slog.Logger
	// Registerer takes the metrics; default a registry of its own.
	Registerer prometheus.Registerer
	// HTTPClient polls and manages streams; default 90 s timeout (long polls).
	HTTPClient *http.Client
	Now        func() time.Time
	// SecretReload is how often the push authorization, bearer token and client secret
	// files are polled for a change (a rotated Kubernetes Secret takes effect without a
	// restart; package filewatch); default 10s.
	SecretReload time.Duration
}

// Receiver takes SETs from the configured transmitters and publishes their revocations.
type Receiver struct {
	byIssuer map[string]*transmitter
	list     []*transmitter
	pub      Publisher
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	replay   *replayCache
	watch    filewatch.Watcher // the secret files
	wg       sync.WaitGroup
}

// transmitter is a configured transmitter and what the receiver holds for it.
type transmitter struct {
	cfg      *Transmitter
	keys     *jwtkeys.Keys
	keyWait  *keyWait                          // a SET's kid not held yet waits here for a fetch
	pushAuth atomic.Pointer[[sha256.Size]byte] // nil: it does not push
	pushRaw  atomic.Pointer[string]            // the push authorization, given to a stream it creates
	bearer   atomic.Pointer[string]            // the receiver's token at the transmitter
	oauth    *oauthClient                      // or its OAuth client, which obtains it
	maxAge   time.Duration
	pollURL  atomic.Pointer[string]
	state    atomic.Pointer[string] // the state of the verification last requested
	streamID atomic.Pointer[string] // the managed stream's id, once known
}

// New loads every transmitter's keys and secrets. The keys of a jwks_uri that cannot
// be reached yet are fetched in the background (Ready says so until then).
func New(ctx context.Context, cfg *Config, pub Publisher, opts Options) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxTokenLifetime <= 0 {
		opts.MaxTokenLifetime = 24 * time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 90 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SecretReload <= 0 {
		opts.SecretReload = 10 * time.Second
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Receiver{byIssuer: map[string]*transmitter{}, pub: pub, opts: opts, log: opts.Log, metrics: m, replay: newReplayCache()}
	for i := range cfg.Transmitters {
		tc := cfg.Transmitters[i]
		t := &transmitter{cfg: &tc, maxAge: time.Duration(tc.MaxAge)}
		if t.maxAge == 0 {
			t.maxAge = opts.MaxTokenLifetime
		}
		if err := r.checkClaims(&tc); err != nil {
			return nil, err
		}
		t.keys, err = jwtkeys.New(ctx, jwtkeys.Config{URL: tc.JWKSURI, File: tc.JWKSFile}, opts.Log.With("transmitter", tc.Issuer))
		if err != nil {
			return nil, fmt.Errorf("ssf transmitter %s: %w", tc.Issuer, err)
		}
		t.keyWait = newKeyWait(t.keys)
		if tc.ClientCredentials != nil {
			t.oauth = newOAuthClient(tc.ClientCredentials)
		}
		if err := r.loadSecrets(t); err != nil {
			return nil, fmt.Errorf("ssf transmitter %s: %w", tc.Issuer, err)
		}
		if tc.PollEndpoint != "" {
			u := tc.PollEndpoint
			t.pollURL.Store(&u)
		}
		m.verified.WithLabelValues(tc.Issuer).Set(0)
		r.byIssuer[tc.Issuer] = t
		r.list = append(r.list, t)
	}
	return r, nil
}

// checkClaims refuses, at start, a transmitter whose cutoffs name a claim the
// publisher would refuse (user_claim uid without --cutoff-claim uid).
func (r *Receiver) checkClaims(t *Transmitter) error {
	claims := []string{t.UserClaim, "sid"}
	if t.EmailSubjects {
		claims = append(claims, t.EmailClaim)
	}
	for _, c := range claims {
		probe := event.Event{Type: event.TypeCutoff, Claim: c, Value: "probe", NotBefore: 1}
		if _, err := r.pub.Payload(&probe); err != nil {
			return fmt.Errorf("ssf transmitter %s: cutoffs on claim %q are not allowed: add --cutoff-claim %s", t.Issuer, c, c)
		}
	}
	return nil
}

// loadSecrets reads the push authorization, bearer token and client secret files, and
// has w read each again when it changes (on an error, the value held before stays).
func (r *Receiver) loadSecrets(t *transmitter) error {
	type secret struct {
		file, what string
		load       func(string) error
	}
	secrets := []secret{
		{t.cfg.PushAuthorizationFile, "push_authorization_file", t.setPushAuth},
		{t.cfg.BearerTokenFile, "bearer_token_file", t.setBearer},
	}
	if t.oauth != nil {
		secrets = append(secrets, secret{t.cfg.ClientCredentials.ClientSecretFile, "client_credentials.client_secret_file", t.oauth.setSecret})
	}
	for _, s := range secrets {
		if s.file == "" {
			continue
		}
		r.watch.Add(func() { // before the first read: a change in between is seen
			if err := s.load(s.file); err != nil {
				r.log.Warn("ssf secret reload failed; keeping the old one", "transmitter", t.cfg.Issuer, "file", s.what, "err", err)
			}
		}, s.file)
		if err := s.load(s.file); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

func (t *transmitter) setPushAuth(file string) error {
	v, err := secretfile.Read(file)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(v))
	t.pushAuth.Store(&sum)
	t.pushRaw.Store(&v)
	return nil
}

func (t *transmitter) setBearer(file string) error {
	v, err := secretfile.Read(file)
	if err != nil {
		return err
	}
	t.bearer.Store(&v)
	return nil
}

// Ready reports whether every transmitter's keys are loaded.
func (r *Receiver) Ready(ctx context.Context) error {
	for _, t := range r.list {
		if !t.keys.Loaded(ctx) {
			return fmt.Errorf("ssf transmitter %s: signing keys not loaded", t.cfg.Issuer)
		}
	}
	return nil
}

// Wait waits for the poll workers and stream management that Start began to end (they
// end with Start's context).
func (r *Receiver) Wait() { r.wg.Wait() }

// errUnavailable is a SET not handled now: its revocations not acknowledged by the
// stream, or the transmitter's keys not fetched. Answered as publish.FailureOf says to
// a push (503 when a retry may succeed), left unacknowledged in a poll (or reported,
// when a retry cannot help).
var errUnavailable = errors.New("ssf: the SET could not be handled now")

// receive validates one SET from t and does what it asks; it returns the event type's
// short name. A nil error means the SET may be acknowledged: its revocations are in
// the stream (or it needs none). A *SETError means it is refused; errUnavailable
// wraps a failure to publish.
func (r *Receiver) receive(ctx context.Context, t *transmitter, raw string) (string, error) {
	now := r.opts.Now()
	name := "none"
	if !t.keys.Loaded(ctx) {
		// Refusing would make the transmitter drop a revocation for a fetch of ours that
		// failed; unacknowledged, it is delivered again.
		r.count(t, name, "unavailable")
		return name, fmt.Errorf("%w: the transmitter's keys are not loaded yet", errUnavailable)
	}
	switch t.keyWait.await(ctx, kidOf(raw)) {
	case keyMissing:
		return name, r.refused(t, name, "", setErr(CodeInvalidKey, "no key of the transmitter's JWKS matches the SET's kid, after fetching its keys again"))
	case keyUnavailable:
		// The kid may be in the JWKS we failed to fetch: refusing would drop a
		// revocation for a failure of ours or of the endpoint, not of the SET.
		r.count(t, name, "unavailable")
		r.log.Warn("ssf SET under a kid not held, and the transmitter's keys could not be fetched; answered as unavailable", "transmitter", t.cfg.Issuer)
		return name, fmt.Errorf("%w: the SET's key is not held and the transmitter's keys could not be fetched", errUnavailable)
	}
	ev, err := verifySET(raw, t.keys, t.cfg, t.maxAge, now)
	if err != nil {
		return name, r.refused(t, name, "", err)
	}
	name = eventName(ev.eventType)
	key := ev.iss + "\x00" + ev.jti
	if r.replay.seen(key, now) {
		r.count(t, name, "replayed")
		r.log.Info("ssf SET replayed; acknowledged, stored once", "transmitter", t.cfg.Issuer, "event", name, "jti_sha256", hashID(ev.jti))
		return name, nil
	}
	p, err := mapSET(t.cfg, ev, r.opts.MaxTokenLifetime, now)
	if err == nil && p.kind == kindVerification {
		err = t.checkVerification(p.state, ev.subID)
	}
	if err == nil {
		err = p.validate(func(e *event.Event) error { _, err := r.pub.Payload(e); return err })
	}
	if err != nil {
		return name, r.refused(t, name, ev.jti, err)
	}
	log := r.log.With("transmitter", t.cfg.Issuer, "event", name, "jti_sha256", hashID(ev.jti))
	result := ""
	switch {
	case p.kind == kindUnknown:
		result = "unknown_event"
		log.Info("ssf event type unknown; acknowledged, nothing revoked", "type_sha256", hashID(ev.eventType))
	case p.kind == kindVerification:
		result = "recorded"
		r.verified(t, now, log)
	case p.kind == kindStreamUpdated:
		result = "recorded"
		r.streamUpdated(t, p.status, p.reason, log)
	case p.policy == PolicyIgnore:
		result = "ignored"
		log.Debug("ssf event ignored by the transmitter's policy")
	case p.policy == PolicyDryRun:
		result = "dry_run"
		for _, e := range p.events {
			r.metrics.published.WithLabelValues(t.cfg.Issuer, "dry_run").Inc()
			log.Info("ssf dry run: would revoke", "type", e.Type, "claim", e.Claim, "value_sha256", hashID(e.Value+e.JTI), "iss", e.Iss, "not_before", e.NotBefore)
		}
	default:
		if result, err = r.publish(ctx, t, p.events, log); err != nil {
			r.count(t, name, publishResult(err))
			return name, err
		}
	}
	r.replay.add(key, time.Unix(ev.iat, 0).Add(t.maxAge+clockSkew), now)
	r.count(t, name, result)
	return name, nil
}

// publish sends the SET's revocations one after the other; all must be acknowledged.
func (r *Receiver) publish(ctx context.Context, t *transmitter, evs []event.Event, log *slog.Logger) (string, error) {
	result := "duplicate"
	for _, e := range evs {
		res, err := r.pub.Publish(ctx, e)
		if err != nil {
			if publish.FailureOf(err).Retry() {
				log.Warn("ssf revocation not acknowledged by the stream", "err", err)
			} else {
				log.Error("ssf revocation refused by the stream; a retry cannot help", "err", err)
			}
			return "", fmt.Errorf("%w: the stream did not acknowledge the revocation: %w", errUnavailable, err)
		}
		if res.Duplicate {
			r.metrics.published.WithLabelValues(t.cfg.Issuer, "duplicate").Inc()
		} else {
			result = "published"
			r.metrics.published.WithLabelValues(t.cfg.Issuer, "published").Inc()
		}
		log.Info("ssf revocation published", "type", e.Type, "claim", e.Claim, "iss", e.Iss, "seq", res.Sequence, "duplicate", res.Duplicate)
	}
	return result, nil
}

// publishResult is the result label of a SET whose revocation was not published:
// unavailable (a retry may succeed) or refused_by_stream (it cannot; publish.FailureOf).
func publishResult(err error) string {
	if publish.FailureOf(err).Retry() {
		return "unavailable"
	}
	return "refused_by_stream"
}

func (r *Receiver) refused(t *transmitter, name, jti string, err error) error {
	var se *SETError
	if !errors.As(err, &se) {
		se = setErr(CodeInvalidRequest, "%.200s", err.Error())
	}
	r.count(t, name, se.Code)
	r.log.Info("ssf SET refused", "transmitter", t.cfg.Issuer, "event", name, "jti_sha256", hashID(jti), "err", se.Code, "description", se.Description)
	return se
}

func (r *Receiver) count(t *transmitter, name, result string) {
	issuer := "unknown"
	if t != nil {
		issuer = t.cfg.Issuer
	}
	r.metrics.sets.WithLabelValues(issuer, name, result).Inc()
}

// CodeInvalidState is the error SSF 1.0 section 8.1.4.1 gives a verification event
// whose state is not the one the receiver asked for.
const CodeInvalidState = "invalid_state"

// checkVerification confirms a verification event (SSF 1.0 section 8.1.4.1): its state
// is the one last requested, when the receiver requested one and the event carries one
// (a transmitter may verify unasked, without state); its subject, when the receiver
// knows its stream, names that stream.
func (t *transmitter) checkVerification(state string, subID []byte) error {
	if want := t.state.Load(); want != nil && state != "" && state != *want {
		return setErr(CodeInvalidState, "the verification event's state is not the one requested")
	}
	if id := t.streamID.Load(); id != nil && subID != nil {
		tg, err := decodeSubject(subID, Quirks{})
		if err != nil || tg.user == nil || tg.user.format != "opaque" || tg.user.value != *id {
			return setErr(CodeInvalidRequest, "the verification event's subject is not this receiver's stream")
		}
	}
	return nil
}

// verified records a verification event: the stream delivers.
func (r *Receiver) verified(t *transmitter, now time.Time, log *slog.Logger) {
	r.metrics.verified.WithLabelValues(t.cfg.Issuer).Set(float64(now.Unix()))
	log.Info("ssf stream verified")
}

// streamUpdated records the stream's status: paused or disabled means revocations
// from this transmitter stop arriving, which must not pass silently.
func (r *Receiver) streamUpdated(t *transmitter, status, reason string, log *slog.Logger) {
	switch status {
	case "enabled":
		log.Info("ssf stream enabled by the transmitter")
	case "paused", "disabled":
		log.Warn("ssf stream "+status+" by the transmitter: its revocations no longer arrive", "reason", sanitize(reason))
	default:
		log.Warn("ssf stream-updated with an unknown status", "status", sanitize(status))
		return
	}
	r.metrics.setStatus(t.cfg.Issuer, status)
}

// sanitize bounds a transmitter's free text before it is logged.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// authenticate finds the transmitter whose push authorization the header is. Every
// transmitter is compared, in constant time.
func (r *Receiver) authenticate(header string) *transmitter {
	got := sha256.Sum256([]byte(header))
	var found *transmitter
	for _, t := range r.list {
		if want := t.pushAuth.Load(); want != nil && subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			found = t
		}
	}
	return found
}

// hashID is what the logs show of a jti: a short SHA-256 prefix.
func hashID(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// replayCache remembers the (iss, jti) of SETs handled until their iat leaves the
// accepted window: a SET delivered again is acknowledged without a second publish.
// (Across replicas, the event_id derived from iss and jti does it within the stream's
// duplicate window; a later copy republishes the same cutoff, which changes nothing.)
type replayCache struct {
	mu    sync.Mutex
	until map[string]time.Time
	adds  int
}

// maxReplayEntries bounds the cache; past it, new SETs are not remembered (the stream's
// duplicate window still drops their copies).
const maxReplayEntries = 200_000

func newReplayCache() *replayCache { return &replayCache{until: map[string]time.Time{}} }

func (c *replayCache) seen(key string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.until[key]
	return ok && now.Before(until)
}

func (c *replayCache) add(key string, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.adds++
	if c.adds%1024 == 0 {
		for k, u := range c.until {
			if !now.Before(u) {
				delete(c.until, k)
			}
		}
	}
	if len(c.until) < maxReplayEntries {
		c.until[key] = until
	}
}

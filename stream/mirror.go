package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// Origin is the stream a regional mirror copies: the revocation stream in the hub's
// JetStream domain, reached over a NATS leaf node. The mirror holds the same events
// at the same sequences, so a sidecar of the region replays and follows it as it would
// the origin, without crossing regions.
type Origin struct {
	Domain string // the hub's JetStream domain (jetstream { domain: hub })
	Stream string // default REVOCATIONS
}

// MirrorSilence is how long a mirror may go without hearing from its origin (the
// server hears a heartbeat every second while the link is up) before it counts as cut
// off: the sidecar (sync) reports itself stale past it, and revokectl stream info
// fails.
const MirrorSilence = 5 * time.Second

// Errors of EnsureMirror and Ensure.
var (
	// ErrSameDomain: a mirror lives in another JetStream domain than its origin.
	ErrSameDomain = errors.New("the mirror would live in its origin's own JetStream domain: connect to a server of the region (a leaf node with its own domain)")
	// ErrOriginUnreachable: the origin's domain did not answer, or has no such stream.
	ErrOriginUnreachable = errors.New("origin stream not reachable")
	// ErrNotMirror: a stream of that name exists here and takes publishes itself.
	ErrNotMirror = errors.New("a stream of that name exists in this domain and is not a mirror")
	// ErrIsMirror: the stream exists as a mirror; Ensure does not turn it into a
	// stream of its own.
	ErrIsMirror = errors.New("the stream is a mirror")
)

// ValidDomain checks a JetStream domain name: one subject token, as the server's
// jetstream { domain } takes it.
func ValidDomain(d string) error {
	switch {
	case d == "":
		return errors.New("empty JetStream domain")
	case len(d) > 64:
		return fmt.Errorf("JetStream domain %.20q…: longer than 64 bytes", d)
	case strings.ContainsAny(d, ".*> \t\r\n"):
		return fmt.Errorf("JetStream domain %q: one subject token, without '.', '*', '>' or spaces", d)
	}
	return nil
}

// APIPrefix is the JetStream API of the origin's domain as seen from a leaf node.
func (o Origin) APIPrefix() string { return "$JS." + o.Domain + ".API" }

func (o Origin) withDefaults() Origin {
	if o.Stream == "" {
		o.Stream = event.DefaultStream
	}
	return o
}

// MirrorConfig returns the JetStream configuration of a mirror, named s.Name, of o:
// the limits of Config (MaxAge from the token lifetime, MaxMsgs with DiscardNew, file
// storage), no subjects (a mirror takes no publishes: revocations published in the
// region cross the leaf node to the origin) and no duplicate window (the origin has
// deduplicated what it stored). No MaxMsgSize: the mirror takes whatever its origin
// stored; a smaller limit would stop it at that event.
func MirrorConfig(s Settings, o Origin) jetstream.StreamConfig {
	o = o.withDefaults()
	cfg := Config(s)
	cfg.Description = fmt.Sprintf("revoked: mirror of JWT revocation stream %s in JetStream domain %s", o.Stream, o.Domain)
	cfg.Subjects, cfg.Duplicates, cfg.MaxMsgSize = nil, 0, 0
	cfg.Mirror = &jetstream.StreamSource{Name: o.Stream, External: &jetstream.ExternalStream{APIPrefix: o.APIPrefix()}}
	return cfg
}

// MirrorOrigin returns the origin of a mirror from its configuration: ok is false
// for a stream that is not a mirror. Domain is empty for a mirror within its own
// domain (no External API prefix of the $JS.<domain>.API form).
func MirrorOrigin(cfg jetstream.StreamConfig) (o Origin, ok bool) {
	if cfg.Mirror == nil {
		return Origin{}, false
	}
	o.Stream = cfg.Mirror.Name
	if ext := cfg.Mirror.External; ext != nil {
		if d, found := strings.CutPrefix(ext.APIPrefix, "$JS."); found {
			o.Domain, _ = strings.CutSuffix(d, ".API")
		}
	}
	return o, true
}

// EnsureMirror creates the mirror of o named s.Name in the domain js is connected to,
// or updates its limits when it exists. It refuses what would make a mirror that
// silently misses revocations or never starts: a mirror in its origin's own domain, an
// origin it cannot reach, a mirror that keeps fewer events than its origin (DiscardNew:
// it would stop copying once full), a stream of that name that is not a mirror, or a
// mirror of another origin (the server cannot change a mirror's origin).
func EnsureMirror(ctx context.Context, js jetstream.JetStream, s Settings, o Origin) (jetstream.Stream, error) {
	if err := ValidDomain(o.Domain); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	cfg := MirrorConfig(s, o)
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("JetStream of this server: %w", err)
	}
	if ai.Domain == o.Domain {
		return nil, fmt.Errorf("domain %s: %w", o.Domain, ErrSameDomain)
	}
	hub, err := jetstream.NewWithDomain(js.Conn(), o.Domain)
	if err != nil {
		return nil, err
	}
	origin, err := hub.Stream(ctx, o.Stream)
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s in JetStream domain %s (is this server a leaf node of the hub, and the hub's jetstream domain %s?): %v",
			ErrOriginUnreachable, o.Stream, o.Domain, o.Domain, err)
	}
	if oc := origin.CachedInfo().Config; keepsFewer(cfg.MaxMsgs, oc.MaxMsgs) {
		if oc.MaxMsgs <= 0 {
			return nil, fmt.Errorf("the origin %s keeps any number of events, the mirror at most %d: once full it would stop copying revocations; give the origin a limit (revokectl stream init in the hub)", o.Stream, cfg.MaxMsgs)
		}
		return nil, fmt.Errorf("the mirror would keep at most %d events, its origin %s up to %d: once full it would stop copying revocations; give it --max-msgs %d or more",
			cfg.MaxMsgs, o.Stream, oc.MaxMsgs, oc.MaxMsgs)
	}
	if existing, err := js.Stream(ctx, cfg.Name); err == nil {
		ec := existing.CachedInfo().Config
		eo, isMirror := MirrorOrigin(ec)
		switch {
		case !isMirror:
			return nil, fmt.Errorf("stream %s (subjects %s): %w; give the mirror another name (--stream), or delete that stream", cfg.Name, strings.Join(ec.Subjects, ","), ErrNotMirror)
		case eo != o:
			return nil, fmt.Errorf("stream %s already mirrors %s in domain %q: a mirror's origin cannot change; delete it first", cfg.Name, eo.Stream, eo.Domain)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("mirror %s: %w", cfg.Name, err)
	}
	return st, nil
}

// keepsFewer reports whether a limit of mine messages (<= 0: none) is below theirs.
func keepsFewer(mine, theirs int64) bool {
	if mine <= 0 {
		return false
	}
	return theirs <= 0 || mine < theirs
}

// refuseMirror returns ErrIsMirror when the stream name exists as a mirror. A failed
// lookup is left to the update that follows to report.
func refuseMirror(ctx context.Context, js jetstream.JetStream, name string) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	o, ok := MirrorOrigin(st.CachedInfo().Config)
	switch {
	case !ok:
		return nil
	case o.Domain == "":
		return fmt.Errorf("stream %s: %w of %s", name, ErrIsMirror, o.Stream)
	}
	return fmt.Errorf("stream %s: %w of %s in JetStream domain %s, and updating it as a stream would cut it off from its origin: run revokectl stream init --mirror-of %s",
		name, ErrIsMirror, o.Stream, o.Domain, o.Domain)
}

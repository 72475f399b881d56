// Package stream defines the JetStream stream that carries revocation events, so that
// revokectl, the ingest API, dev mode and the tests create it the same way.
package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// Settings choose the stream's shape. Zero fields take the contract's defaults.
type Settings struct {
	Name             string        // default REVOCATIONS
	SubjectPrefix    string        // default revocations
	MaxTokenLifetime time.Duration // the revocation window; MaxAge is this plus WindowMargin; default 24h
	DuplicateWindow  time.Duration // default 2m
	Replicas         int           // default 1; 3 on a NATS cluster
	MaxMsgs          int64         // events kept at most; past it new events are refused; default DefaultMaxMsgs
}

// WindowMargin is kept beyond the longest token lifetime: a sidecar accepts a token up
// to its --leeway (at most 5m) past exp, and a cutoff may reach CutoffAhead past the
// moment it was stored; the event that revokes a token is needed that long.
const WindowMargin = 10 * time.Minute

// CutoffAhead is how far past the moment the stream stored it a cutoff's not_before
// is honoured: publishers write now+1 to include tokens issued in the current second,
// and their clocks drift. Later not_befores are bounded to it (see sync).
const CutoffAhead = time.Minute

// DefaultMaxMsgs bounds the stream: four times the million revocations a day it is
// built for, and what a replica keeps by default (sync.DefaultMaxEntries). A publisher
// flooding it gets errors (the stream refuses new events, nothing acknowledged is
// dropped) instead of every sidecar running out of memory.
const DefaultMaxMsgs = 4_000_000

// MinMaxAge is the shortest MaxAge that keeps every revocation of a token living up to
// lifetime, accepted leeway past its exp, issued up to CutoffAhead after a cutoff was
// stored: what a sidecar checks before it is ready.
func MinMaxAge(lifetime, leeway time.Duration) time.Duration {
	return lifetime + leeway + CutoffAhead
}

// CoversWindow reports whether a stream keeping events for maxAge (0: for ever) keeps
// every revocation of tokens living up to lifetime, accepted leeway past exp.
func CoversWindow(maxAge, lifetime, leeway time.Duration) bool {
	return maxAge == 0 || maxAge >= MinMaxAge(lifetime, leeway)
}

func (s Settings) withDefaults() Settings {
	if s.Name == "" {
		s.Name = event.DefaultStream
	}
	if s.SubjectPrefix == "" {
		s.SubjectPrefix = event.DefaultSubjectPrefix
	}
	if s.MaxTokenLifetime <= 0 {
		s.MaxTokenLifetime = 24 * time.Hour
	}
	if s.DuplicateWindow <= 0 {
		s.DuplicateWindow = 2 * time.Minute
	}
	if s.Replicas <= 0 {
		s.Replicas = 1
	}
	if s.MaxMsgs <= 0 {
		s.MaxMsgs = DefaultMaxMsgs
	}
	return s
}

// Config returns the JetStream configuration for s. MaxAge keeps every event for as long
// as a token it revokes can live, and a margin, so a replica replayed from the stream
// misses nothing. When full (MaxMsgs) the stream refuses new events (DiscardNew): a
// publisher sees the error and retries; DiscardOld would drop acknowledged
// revocations of live tokens.
func Config(s Settings) jetstream.StreamConfig {
	s = s.withDefaults()
	return jetstream.StreamConfig{
		Name:        s.Name,
		Description: "revoked: JWT revocation events",
		Subjects:    []string{s.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     s.MaxMsgs,
		MaxAge:      s.MaxTokenLifetime + WindowMargin,
		Duplicates:  s.DuplicateWindow,
		MaxMsgSize:  2*event.MaxPayload + 1024, // headers count too: Nats-Msg-Id repeats the event_id
		Replicas:    s.Replicas,
		AllowDirect: true,
	}
}

// Ensure creates the stream, or updates it to s when it exists. A mirror of that name
// (a region's copy, see EnsureMirror) is refused with ErrIsMirror.
func Ensure(ctx context.Context, js jetstream.JetStream, s Settings) (jetstream.Stream, error) {
	cfg := Config(s)
	// The server "promotes" a mirror updated without its mirror settings to a stream
	// of its own: a region's copy would silently stop following the hub and keep the
	// region's revocations to itself.
	if err := refuseMirror(ctx, js, cfg.Name); err != nil {
		return nil, err
	}
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return st, nil
}

// ErrNoStream is returned when the stream does not exist.
var ErrNoStream = errors.New("stream not found: create it with 'revokectl stream init'")

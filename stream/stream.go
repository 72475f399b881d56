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
	MaxTokenLifetime time.Duration // the stream's MaxAge; default 24h
	DuplicateWindow  time.Duration // default 2m
	Replicas         int           // default 1; 3 on a NATS cluster
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
	return s
}

// Config returns the JetStream configuration for s. MaxAge keeps every event for as long
// as a token it revokes can live, so a replica replayed from the stream misses nothing.
func Config(s Settings) jetstream.StreamConfig {
	s = s.withDefaults()
	return jetstream.StreamConfig{
		Name:        s.Name,
		Description: "revoked: JWT revocation events",
		Subjects:    []string{s.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      s.MaxTokenLifetime,
		Duplicates:  s.DuplicateWindow,
		MaxMsgSize:  2*event.MaxPayload + 1024, // headers count too: Nats-Msg-Id repeats the event_id
		Replicas:    s.Replicas,
		AllowDirect: true,
	}
}

// Ensure creates the stream, or updates it to s when it exists.
func Ensure(ctx context.Context, js jetstream.JetStream, s Settings) (jetstream.Stream, error) {
	cfg := Config(s)
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return st, nil
}

// ErrNoStream is returned when the stream does not exist.
var ErrNoStream = errors.New("stream not found: create it with 'revokectl stream init'")

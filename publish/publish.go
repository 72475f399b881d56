// Package publish writes revocation events to the JetStream stream: it is shared by
// revokectl and the ingest API, so that every writer validates, identifies and confirms
// an event the same way.
//
// An event is validated against the contract before it is sent (event.Validate, the
// 4 KiB payload limit). It travels with a Nats-Msg-Id header, so that the stream's
// duplicate window drops a second copy: the event's event_id when it has one (CONTRACT
// section 2), otherwise an id derived from the event's content (see MsgID). Publish waits
// for the JetStream ack and returns the stream sequence; an attempt that times out, or
// that finds no stream responding (a leader election, a reconnect), is retried with the
// same message and id after a backoff, so a retry never doubles an event, and an event
// whose ack never came back is reported as an error, never as done.
package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// JetStream is the part of jetstream.JetStream the publisher uses; a jetstream.JetStream
// satisfies it.
type JetStream interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Config tunes a Publisher. Zero fields take the defaults.
type Config struct {
	// SubjectPrefix is the prefix of the event subjects; default "revocations".
	SubjectPrefix string
	// Stream, when set, is the stream the ack must come from (Nats-Expected-Stream):
	// a subject bound to another stream is refused instead of being stored there.
	Stream string
	// AllowedClaims are the claims a cutoff may name besides event.DefaultCutoffClaims.
	AllowedClaims []string
	// AttemptTimeout bounds one attempt: the publish and its ack; default 2s.
	AttemptTimeout time.Duration
	// Attempts is how many times an event is sent before Publish gives up; default 4.
	Attempts int
	// Backoff is the wait before the first retry, doubled for each further one up to
	// MaxBackoff; defaults 100ms and 1s.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

func (c Config) withDefaults() Config {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = event.DefaultSubjectPrefix
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 2 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 4
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Second
	}
	return c
}

// Publisher publishes events to the stream. It is safe for concurrent use.
type Publisher struct {
	js  JetStream
	cfg Config
}

// New returns a Publisher writing through js.
func New(js JetStream, cfg Config) *Publisher {
	return &Publisher{js: js, cfg: cfg.withDefaults()}
}

// Result is what the stream answered for one event.
type Result struct {
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"` // the stream already held an event with this id
	MsgID     string `json:"msg_id"`
	// Attempts is how many times the event was sent. A duplicate on the first attempt
	// was published before by someone else; after a retry it may be this publisher's
	// own earlier attempt, whose ack was lost.
	Attempts int `json:"-"`
}

// Errors Publish returns besides the event package's validation errors.
var (
	// ErrUnavailable wraps every failure to get an ack: the event may or may not be in
	// the stream, and the caller must treat it as not published (and may retry: the
	// same event keeps the same Nats-Msg-Id).
	ErrUnavailable = errors.New("publish: no ack from the stream")
	// ErrRefused wraps an error the stream itself answered (wrong stream, message too
	// large): retrying the same event will not help.
	ErrRefused = errors.New("publish: refused by the stream")
)

// MsgIDHeader is the JetStream de-duplication header.
const MsgIDHeader = jetstream.MsgIDHeader

// MsgID returns the Nats-Msg-Id of ev: its event_id when set; otherwise "sha256:" and
// the hex SHA-256 of its payload (the canonical JSON Payload returns: the contract's
// fields in a fixed order, unknown fields dropped). Two publications of the same
// content within the stream's duplicate window are thus stored once, and a retry of an
// event, or the re-import of a file, cannot double it. Events that differ in any field
// (revoked_at included) are distinct.
func MsgID(ev *event.Event, payload []byte) string {
	if ev.EventID != "" {
		return ev.EventID
	}
	sum := sha256.Sum256(payload)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// AllowedClaims are the claims a cutoff may name besides event.DefaultCutoffClaims.
func (p *Publisher) AllowedClaims() []string { return p.cfg.AllowedClaims }

// Payload validates ev against the contract and returns its JSON payload.
func (p *Publisher) Payload(ev *event.Event) ([]byte, error) {
	if err := ev.Validate(p.cfg.AllowedClaims); err != nil {
		return nil, err
	}
	if strings.ContainsFunc(ev.EventID, isControl) {
		// The id travels as a header value, where CR or LF would end the header.
		return nil, &event.Error{Kind: event.ErrInvalid, Detail: "event_id holds a control character"}
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, &event.Error{Kind: event.ErrMalformed, Detail: err.Error()}
	}
	if len(payload) > event.MaxPayload {
		return nil, &event.Error{Kind: event.ErrTooLarge, Detail: fmt.Sprintf("%d bytes", len(payload))}
	}
	return payload, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Message validates ev and returns the NATS message that carries it.
func (p *Publisher) Message(ev *event.Event) (*nats.Msg, error) {
	payload, err := p.Payload(ev)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(event.Subject(p.cfg.SubjectPrefix, ev.Type))
	m.Data = payload
	m.Header.Set(MsgIDHeader, MsgID(ev, payload))
	if p.cfg.Stream != "" {
		m.Header.Set(jetstream.ExpectedStreamHeader, p.cfg.Stream)
	}
	return m, nil
}

// Publish validates ev, sends it and waits for the ack, retrying as the package doc
// says. A validation error wraps one of the event package's sentinels; a failure to get
// an ack wraps ErrUnavailable; an error answered by the stream wraps ErrRefused.
func (p *Publisher) Publish(ctx context.Context, ev event.Event) (Result, error) {
	m, err := p.Message(&ev)
	if err != nil {
		return Result{}, err
	}
	return p.PublishMsg(ctx, m)
}

// PublishMsg sends a message built by Message, with Publish's retries.
func (p *Publisher) PublishMsg(ctx context.Context, m *nats.Msg) (Result, error) {
	return p.retry(ctx, m, 0, nil)
}

// retry sends m until an ack comes, starting at attempt done (attempts already made)
// with lastErr the error of the previous attempt.
func (p *Publisher) retry(ctx context.Context, m *nats.Msg, done int, lastErr error) (Result, error) {
	id := m.Header.Get(MsgIDHeader)
	wait := p.cfg.Backoff
	for i := 0; i < done; i++ {
		wait = min(2*wait, p.cfg.MaxBackoff)
	}
	attempt := done
	for ; attempt < p.cfg.Attempts; attempt++ {
		if attempt > 0 {
			if !Retryable(lastErr) {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return Result{MsgID: id}, fmt.Errorf("%w: %w (after %d attempts, last: %w)", ErrUnavailable, ctx.Err(), attempt, lastErr)
			case <-t.C:
			}
			wait = min(2*wait, p.cfg.MaxBackoff)
		}
		actx, cancel := context.WithTimeout(ctx, p.cfg.AttemptTimeout)
		ack, err := p.js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			return Result{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate, MsgID: id, Attempts: attempt + 1}, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			attempt++
			break
		}
	}
	return Result{MsgID: id}, classify(lastErr, attempt)
}

func classify(err error, attempts int) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: no stream listens on the subject (create it with 'revokectl stream init'): %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w (gave up after %d attempts)", ErrUnavailable, err, attempts)
}

// Retryable reports whether an attempt that failed with err may be repeated: a timeout
// (the ack may have been lost, so the event may be stored: the repeat carries the same
// Nats-Msg-Id and is dropped as a duplicate), no responders (a stream leader election),
// or a connection in the middle of a reconnect.
func Retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting):
		return true
	}
	return false
}

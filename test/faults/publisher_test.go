package faults

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/testsupport"
)

// pubEvent is one revocation the publisher sends, with the token it revokes.
type pubEvent struct {
	id    string // event_id and Nats-Msg-Id
	token string // a token whose jti the event revokes
	jti   string
	exp   int64
	seq   uint64 // stream sequence from the ack
}

// publisher sends a steady flow of jti events, as an IdP would: each event has an
// event_id sent as Nats-Msg-Id, and an event whose ack does not come is sent again
// with the same id until it is acked, so that a lost ack doubles nothing.
type publisher struct {
	t       *testing.T
	js      jetstream.JetStream
	issuer  *devissuer.Issuer
	every   time.Duration
	ackWait time.Duration

	mu        sync.Mutex
	events    []*pubEvent // every event created, in order
	acked     int
	attempts  int // publish calls, retries included
	retries   int
	dupAcks   int // acks saying the stream already had the event (a retry after a lost ack)
	lastError error

	stop chan struct{}
	done chan struct{}
}

func newPublisher(t *testing.T, js jetstream.JetStream, issuer *devissuer.Issuer, rate int) *publisher {
	return &publisher{
		t: t, js: js, issuer: issuer,
		every:   time.Second / time.Duration(rate),
		ackWait: time.Second,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// start publishes until finish is called.
func (p *publisher) start() {
	go func() {
		defer close(p.done)
		tick := time.NewTicker(p.every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.publishOne(p.newEvent(), p.stop)
		}
	}()
}

func (p *publisher) newEvent() *pubEvent {
	jti := devissuer.RandomID()
	exp := time.Now().Add(time.Hour).Unix()
	tok := p.issuer.Token("user-"+jti[:6], time.Hour, jwt.MapClaims{"jti": jti, "exp": exp})
	addSecret(tok)
	ev := &pubEvent{id: devissuer.RandomID(), token: tok, jti: jti, exp: exp}
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
	return ev
}

// payload is the event revoking ev's token.
func (p *publisher) payload(ev *pubEvent) []byte {
	b, _ := json.Marshal(event.Event{
		Type: event.TypeJTI, JTI: ev.jti, Exp: ev.exp, Iss: p.issuer.Issuer,
		Reason: "logout", RevokedAt: time.Now().Unix(), RevokedBy: "faults", EventID: ev.id,
	})
	return b
}

// publishOne sends ev until it is acked. Once stop is closed it still tries for 60 s,
// so that no event is left in doubt (sent, maybe stored, never acked).
func (p *publisher) publishOne(ev *pubEvent, stop <-chan struct{}) {
	data := p.payload(ev)
	var giveUp <-chan time.Time
	for try := 0; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), p.ackWait)
		ack, err := p.js.Publish(ctx, event.Subject(event.DefaultSubjectPrefix, event.TypeJTI), data, jetstream.WithMsgID(ev.id))
		cancel()
		p.mu.Lock()
		p.attempts++
		if try > 0 {
			p.retries++
		}
		if err == nil {
			ev.seq = ack.Sequence
			p.acked++
			if ack.Duplicate {
				p.dupAcks++
			}
			p.mu.Unlock()
			return
		}
		p.lastError = err
		p.mu.Unlock()
		if giveUp == nil {
			select {
			case <-stop:
				giveUp = time.After(60 * time.Second)
			default:
			}
		}
		select {
		case <-giveUp:
			p.t.Errorf("event %s never acked: %v", ev.id, err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// finish stops the flow and waits for the event in flight to be acked.
func (p *publisher) finish() {
	close(p.stop)
	<-p.done
}

// stats is a snapshot of the publisher's counts.
type stats struct {
	published, acked, attempts, retries, dupAcks int
	lastError                                    error
}

func (p *publisher) stats() stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return stats{len(p.events), p.acked, p.attempts, p.retries, p.dupAcks, p.lastError}
}

// ackedEvents returns the events acked so far.
func (p *publisher) ackedEvents() []*pubEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pubEvent
	for _, ev := range p.events {
		if ev.seq > 0 {
			out = append(out, ev)
		}
	}
	return out
}

// waitAcked waits until at least n events have been acked.
func (p *publisher) waitAcked(n int) {
	p.t.Helper()
	testsupport.WaitFor(p.t, 60*time.Second, "events acked", func() error {
		if s := p.stats(); s.acked < n {
			return errors.New("not yet")
		}
		return nil
	})
}

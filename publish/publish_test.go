package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/stream"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func jtiEvent(jti string) event.Event {
	return event.Event{Type: event.TypeJTI, JTI: jti, Exp: 1767225600, Iss: "https://idp.example.com", Reason: "logout"}
}

// setup runs a server with the stream and returns a JetStream on its own connection.
func setup(t *testing.T, opts ...nats.Option) (*testsupport.NATS, jetstream.JetStream) {
	t.Helper()
	srv := testsupport.StartNATS(t)
	srv.CreateStream(stream.Settings{})
	js, err := jetstream.New(srv.Connect(opts...))
	if err != nil {
		t.Fatal(err)
	}
	return srv, js
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(ctxT(t), event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublishStoresEventWithHeaders(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{Stream: event.DefaultStream})
	ctx := ctxT(t)

	tests := map[string]struct {
		ev      event.Event
		subject string
		msgID   string
	}{
		"jti with event_id": {
			ev:      event.Event{Type: "jti", JTI: "j-1", Exp: 1767225600, EventID: "evt-1"},
			subject: "revocations.jti",
			msgID:   "evt-1",
		},
		"cutoff without event_id": {
			ev:      event.Event{Type: "cutoff", Claim: "sub", Value: "user-42", NotBefore: 1767222000},
			subject: "revocations.cutoff",
		},
	}
	st, err := js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := p.Publish(ctx, tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			if r.Duplicate || r.Sequence == 0 || r.Stream != event.DefaultStream {
				t.Fatalf("result %+v", r)
			}
			msg, err := st.GetMsg(ctx, r.Sequence)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Subject != tc.subject {
				t.Errorf("subject %q, want %q", msg.Subject, tc.subject)
			}
			want := tc.msgID
			if want == "" {
				want = publish.MsgID(&tc.ev, msg.Data)
				if !strings.HasPrefix(want, "sha256:") {
					t.Errorf("derived id %q", want)
				}
			}
			if got := msg.Header.Get(publish.MsgIDHeader); got != want || r.MsgID != want {
				t.Errorf("Nats-Msg-Id %q, result %q, want %q", got, r.MsgID, want)
			}
			got, err := event.Decode(msg.Data, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.ev {
				t.Errorf("stored %+v, want %+v", got, tc.ev)
			}
		})
	}
}

func TestPublishSameEventTwiceIsStoredOnce(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{})
	ctx := ctxT(t)
	for name, ev := range map[string]event.Event{
		"with event_id":    {Type: "jti", JTI: "a", Exp: 1767225600, EventID: "same"},
		"without event_id": {Type: "cutoff", Claim: "sid", Value: "s-1", NotBefore: 1767222000},
	} {
		t.Run(name, func(t *testing.T) {
			first, err := p.Publish(ctx, ev)
			if err != nil {
				t.Fatal(err)
			}
			second, err := p.Publish(ctx, ev)
			if err != nil {
				t.Fatal(err)
			}
			if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence || second.Attempts != 1 {
				t.Fatalf("first %+v, second %+v", first, second)
			}
		})
	}
	if n := streamMsgs(t, js); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
	// A different field is a different event.
	r, err := p.Publish(ctx, event.Event{Type: "cutoff", Claim: "sid", Value: "s-1", NotBefore: 1767222001})
	if err != nil || r.Duplicate {
		t.Fatalf("%+v %v", r, err)
	}
}

// lossyJS publishes for real but loses the ack of the first n attempts, as a reply lost
// on the network or a timeout just after the stream stored the message would.
type lossyJS struct {
	jetstream.JetStream
	lose  int
	calls atomic.Int32
	ids   sync.Map // Nats-Msg-Id of every attempt
}

func (l *lossyJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	n := l.calls.Add(1)
	l.ids.Store(n, m.Header.Get(publish.MsgIDHeader))
	ack, err := l.JetStream.PublishMsg(ctx, m, opts...)
	if err == nil && int(n) <= l.lose {
		<-ctx.Done() // the ack never arrives: the attempt times out
		return nil, ctx.Err()
	}
	return ack, err
}

func TestPublishRetryAfterLostAckDoesNotDouble(t *testing.T) {
	_, js := setup(t)
	lossy := &lossyJS{JetStream: js, lose: 2}
	p := publish.New(lossy, publish.Config{AttemptTimeout: 200 * time.Millisecond, Backoff: 10 * time.Millisecond})
	for name, ev := range map[string]event.Event{
		"derived id":  jtiEvent("retried"),
		"event_id id": {Type: "jti", JTI: "retried-2", Exp: 1767225600, EventID: "idp-77"},
	} {
		t.Run(name, func(t *testing.T) {
			lossy.calls.Store(0)
			before := streamMsgs(t, js)
			r, err := p.Publish(ctxT(t), ev)
			if err != nil {
				t.Fatal(err)
			}
			if got := lossy.calls.Load(); got != 3 {
				t.Fatalf("%d attempts, want 3", got)
			}
			first, _ := lossy.ids.Load(int32(1))
			third, _ := lossy.ids.Load(int32(3))
			if first != third || first != r.MsgID {
				t.Fatalf("ids changed between attempts: %v %v %v", first, third, r.MsgID)
			}
			if !r.Duplicate || r.Sequence != before+1 || r.Attempts != 3 {
				t.Fatalf("result %+v: want the duplicate ack of sequence %d", r, before+1)
			}
			if n := streamMsgs(t, js); n != before+1 {
				t.Fatalf("stream holds %d messages, want %d: the retry doubled the event", n, before+1)
			}
		})
	}
}

func TestPublishGivesUpLoudly(t *testing.T) {
	t.Run("every ack lost", func(t *testing.T) {
		_, js := setup(t)
		lossy := &lossyJS{JetStream: js, lose: 100}
		p := publish.New(lossy, publish.Config{AttemptTimeout: 100 * time.Millisecond, Attempts: 3, Backoff: time.Millisecond})
		r, err := p.Publish(ctxT(t), jtiEvent("never-acked"))
		if !errors.Is(err, publish.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
		if r.Sequence != 0 {
			t.Fatalf("an unacked event reported sequence %d", r.Sequence)
		}
		if got := lossy.calls.Load(); got != 3 {
			t.Fatalf("%d attempts, want 3", got)
		}
	})
	t.Run("server down", func(t *testing.T) {
		srv, js := setup(t, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
		p := publish.New(js, publish.Config{AttemptTimeout: 200 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond})
		if _, err := p.Publish(ctxT(t), jtiEvent("before")); err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		start := time.Now()
		_, err := p.Publish(ctxT(t), jtiEvent("during"))
		if !errors.Is(err, publish.ErrUnavailable) {
			t.Fatalf("err %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("gave up after %v", d)
		}
	})
	t.Run("no stream", func(t *testing.T) {
		srv := testsupport.StartNATS(t)
		js, _ := jetstream.New(srv.Connect())
		p := publish.New(js, publish.Config{Attempts: 1})
		_, err := p.Publish(ctxT(t), jtiEvent("x"))
		if !errors.Is(err, publish.ErrUnavailable) || !strings.Contains(err.Error(), "stream init") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("wrong stream", func(t *testing.T) {
		_, js := setup(t)
		p := publish.New(js, publish.Config{Stream: "OTHER"})
		_, err := p.Publish(ctxT(t), jtiEvent("x"))
		if !errors.Is(err, publish.ErrRefused) {
			t.Fatalf("err %v, want ErrRefused", err)
		}
		if n := streamMsgs(t, js); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
	})
}

func TestPublishRejectsInvalidEvents(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{})
	tests := map[string]struct {
		ev   event.Event
		want error
	}{
		"unknown type":          {event.Event{Type: "session", JTI: "x", Exp: 1}, event.ErrUnknownType},
		"jti without exp":       {event.Event{Type: "jti", JTI: "x"}, event.ErrInvalid},
		"empty jti":             {event.Event{Type: "jti", Exp: 1767225600}, event.ErrInvalid},
		"claim not allowed":     {event.Event{Type: "cutoff", Claim: "email", Value: "a@b", NotBefore: 1}, event.ErrInvalid},
		"unknown reason":        {event.Event{Type: "jti", JTI: "x", Exp: 1767225600, Reason: "because"}, event.ErrInvalid},
		"event_id with newline": {event.Event{Type: "jti", JTI: "x", Exp: 1767225600, EventID: "a\r\nNats-Expected-Stream: X"}, event.ErrInvalid},
		"payload over 4 KiB":    {event.Event{Type: "jti", JTI: "x", Exp: 1767225600, Sub: strings.Repeat("s", 4100)}, event.ErrTooLarge},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := p.Publish(ctxT(t), tc.ev)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	if n := streamMsgs(t, js); n != 0 {
		t.Fatalf("%d invalid events stored", n)
	}
}

func TestPipelinePublishesInOrderAndDedupes(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{})
	const n = 5000
	run := func() []publish.Result {
		results := make([]publish.Result, 0, n)
		var errs []error
		next := 0
		pl := p.NewPipeline(ctxT(t), 64, func(tag int, r publish.Result, err error) {
			if tag != next {
				t.Errorf("result for %d, want %d", tag, next)
			}
			next++
			results = append(results, r)
			if err != nil {
				errs = append(errs, err)
			}
		})
		for i := range n {
			if err := pl.Publish(i, jtiEvent(fmt.Sprintf("bulk-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := pl.Publish(n, event.Event{Type: "bogus"}); !errors.Is(err, event.ErrUnknownType) {
			t.Fatalf("invalid event: %v", err)
		}
		pl.Close()
		if len(errs) > 0 {
			t.Fatalf("%d errors, first: %v", len(errs), errs[0])
		}
		return results
	}
	first := run()
	seen := map[uint64]bool{}
	for i, r := range first {
		if r.Duplicate || r.Sequence == 0 || seen[r.Sequence] {
			t.Fatalf("event %d: %+v", i, r)
		}
		seen[r.Sequence] = true
	}
	second := run()
	for i, r := range second {
		if !r.Duplicate || r.Sequence != first[i].Sequence {
			t.Fatalf("re-published event %d: %+v, first %+v", i, r, first[i])
		}
	}
	if got := streamMsgs(t, js); got != n {
		t.Fatalf("stream holds %d, want %d", got, n)
	}
}

func TestPipelineReportsOutage(t *testing.T) {
	srv, js := setup(t, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	p := publish.New(js, publish.Config{AttemptTimeout: 200 * time.Millisecond, Attempts: 2, Backoff: time.Millisecond})
	srv.Stop()
	var ok, failed, refused int
	pl := p.NewPipeline(ctxT(t), 16, func(_ int, r publish.Result, err error) {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, publish.ErrUnavailable) && r.Sequence == 0:
			failed++
		default:
			t.Errorf("unexpected %+v %v", r, err)
		}
	})
	start := time.Now()
	for i := range 50 {
		if err := pl.Publish(i, jtiEvent(fmt.Sprint(i))); err != nil {
			if !errors.Is(err, publish.ErrUnavailable) {
				t.Fatal(err)
			}
			refused++ // the pipeline broke: nothing more is sent
		}
	}
	pl.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to give up", d)
	}
	if pl.Err() == nil {
		t.Error("pipeline not broken")
	}
	if ok != 0 || failed+refused != 50 || failed == 0 {
		t.Fatalf("ok %d, failed %d: an unacked event was reported as done", ok, failed)
	}
}

func TestPipelineRetriesLostAcks(t *testing.T) {
	srv, js := setup(t, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	p := publish.New(js, publish.Config{AttemptTimeout: time.Second, Attempts: 20, Backoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	var mu sync.Mutex
	var errs []error
	var results []publish.Result
	pl := p.NewPipeline(ctxT(t), 256, func(_ int, r publish.Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
		results = append(results, r)
	})
	const n = 2000
	for i := range n {
		if i == n/2 {
			srv.Restart() // acks in flight are lost; the events are sent again
		}
		if err := pl.Publish(i, jtiEvent(fmt.Sprintf("r-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	pl.Close()
	if len(errs) > 0 {
		t.Fatalf("%d errors, first %v", len(errs), errs[0])
	}
	if got := streamMsgs(t, js); got != n {
		t.Fatalf("stream holds %d, want exactly %d", got, n)
	}
}

func TestRetryable(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"nil":          {nil, false},
		"deadline":     {context.DeadlineExceeded, true},
		"nats timeout": {nats.ErrTimeout, true},
		"async ack":    {jetstream.ErrAsyncPublishTimeout, true},
		"no responder": {fmt.Errorf("x: %w", jetstream.ErrNoStreamResponse), true},
		"disconnected": {nats.ErrDisconnected, true},
		"closed":       {nats.ErrConnectionClosed, false},
		"canceled":     {context.Canceled, false},
		"api error":    {&jetstream.APIError{Code: 400, Description: "bad"}, false},
	}
	for name, tc := range tests {
		if got := publish.Retryable(tc.err); got != tc.want {
			t.Errorf("%s: Retryable = %v, want %v", name, got, tc.want)
		}
	}
}

func TestMsgIDIsStable(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{})
	ev := jtiEvent("stable")
	a, _ := p.Payload(&ev)
	// The same event decoded from JSON with unknown fields and another field order.
	dec, err := event.Decode([]byte(`{"x-extra":1,"iss":"https://idp.example.com","reason":"logout","exp":1767225600,"jti":"stable","type":"jti"}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Payload(&dec)
	if publish.MsgID(&ev, a) != publish.MsgID(&dec, b) {
		t.Fatalf("ids differ:\n%s\n%s", a, b)
	}
	var m map[string]any
	if err := json.Unmarshal(a, &m); err != nil || m["x-extra"] != nil {
		t.Fatalf("payload %s", a)
	}
}

// The largest payload the contract allows (4 KiB) is stored, even with a long event_id:
// the stream's message size limit leaves room for the Nats-Msg-Id header.
func TestPublishLargestEvent(t *testing.T) {
	_, js := setup(t)
	p := publish.New(js, publish.Config{Attempts: 1})
	ev := event.Event{Type: "jti", JTI: "x", Exp: 1767225600}
	base, _ := p.Payload(&ev)
	ev.Sub = strings.Repeat("s", event.MaxPayload-len(base)-len(`,"sub":""`))
	payload, err := p.Payload(&ev)
	if err != nil || len(payload) != event.MaxPayload {
		t.Fatalf("payload %d bytes: %v", len(payload), err)
	}
	if _, err := p.Publish(ctxT(t), ev); err != nil {
		t.Fatal(err)
	}
	ev.EventID = strings.Repeat("i", 3000)
	ev.Sub = ev.Sub[:len(ev.Sub)-len(`,"event_id":""`)-3000]
	if payload, _ := p.Payload(&ev); len(payload) != event.MaxPayload {
		t.Fatalf("payload %d bytes", len(payload))
	}
	if _, err := p.Publish(ctxT(t), ev); err != nil {
		t.Fatal(err)
	}
}

package publish

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
)

// Pipeline publishes many events asynchronously (bulk import, an array posted to the
// ingest API): at most a fixed number of them wait for their ack at a time, and each
// result, ack or error, is reported in the order the events were given. An event whose
// asynchronous ack does not come in time, or is lost to a reconnect, is sent again
// synchronously with the same message and id, with Publish's retries.
type Pipeline struct {
	p        *Publisher
	ctx      context.Context
	slots    chan struct{}
	queue    chan pending
	done     chan struct{}
	onResult func(tag int, r Result, err error)
	broken   atomic.Pointer[error] // first event that could not be published
}

type pending struct {
	tag  int
	msg  *nats.Msg
	fut  jetstream.PubAckFuture
	err  error // the send itself failed
	sent time.Time
	slot bool // holds a slot of the pipeline
}

// DefaultInFlight is the default bound on events awaiting their ack.
const DefaultInFlight = 1024

// NewPipeline starts a pipeline. onResult is called from one goroutine, once for each
// event Publish accepted, in order. maxInFlight <= 0 means DefaultInFlight.
func (p *Publisher) NewPipeline(ctx context.Context, maxInFlight int, onResult func(tag int, r Result, err error)) *Pipeline {
	if maxInFlight <= 0 {
		maxInFlight = DefaultInFlight
	}
	pl := &Pipeline{
		p:        p,
		ctx:      ctx,
		slots:    make(chan struct{}, maxInFlight),
		queue:    make(chan pending, maxInFlight),
		done:     make(chan struct{}),
		onResult: onResult,
	}
	go pl.collect()
	return pl
}

// Publish validates ev and sends it without waiting for its ack; tag comes back with
// its result. A validation error is returned at once and not reported to onResult.
// Once an event could not be published after all its retries (the stream is
// unreachable), the pipeline is broken: Publish sends nothing more and returns that
// error, wrapping ErrUnavailable, and events still waiting for an ack that has not come
// fail without further retries. Publish blocks while the pipeline is full. It must not
// be called after Close.
func (pl *Pipeline) Publish(tag int, ev event.Event) error {
	m, err := pl.p.Message(&ev)
	if err != nil {
		return err
	}
	if err := pl.Err(); err != nil {
		return err
	}
	select {
	case pl.slots <- struct{}{}:
	case <-pl.ctx.Done():
		// Still reported, as not published, so that every accepted event has a result.
		pl.queue <- pending{tag: tag, msg: m, err: pl.ctx.Err()}
		return nil
	}
	pd := pending{tag: tag, msg: m, sent: time.Now(), slot: true}
	pd.fut, pd.err = pl.p.js.PublishMsgAsync(m)
	pl.queue <- pd
	return nil
}

// Err returns the error that broke the pipeline, or nil.
func (pl *Pipeline) Err() error {
	if e := pl.broken.Load(); e != nil {
		return *e
	}
	return nil
}

// Close waits until every event given to Publish has its result reported.
func (pl *Pipeline) Close() {
	close(pl.queue)
	<-pl.done
}

func (pl *Pipeline) collect() {
	defer close(pl.done)
	for pd := range pl.queue {
		r, err := pl.await(pd)
		if errors.Is(err, ErrUnavailable) && pl.broken.Load() == nil {
			pl.broken.Store(&err)
		}
		if pd.slot {
			<-pl.slots
		}
		pl.onResult(pd.tag, r, err)
	}
}

// await returns the result of one event: its async ack, or else a synchronous retry.
func (pl *Pipeline) await(pd pending) (Result, error) {
	id := pd.msg.Header.Get(MsgIDHeader)
	if pd.err != nil {
		if pl.ctx.Err() != nil || pl.Err() != nil {
			return Result{MsgID: id}, classify(pd.err, 0)
		}
		return pl.p.retry(pl.ctx, copyMsg(pd.msg), 1, pd.err)
	}
	select {
	case ack := <-pd.fut.Ok():
		return ackResult(ack, id), nil
	case err := <-pd.fut.Err():
		return pl.retryAfter(pd, err)
	default:
	}
	t := time.NewTimer(time.Until(pd.sent.Add(pl.p.cfg.AttemptTimeout)))
	defer t.Stop()
	select {
	case ack := <-pd.fut.Ok():
		return ackResult(ack, id), nil
	case err := <-pd.fut.Err():
		return pl.retryAfter(pd, err)
	case <-t.C:
		return pl.retryAfter(pd, jetstream.ErrAsyncPublishTimeout)
	case <-pl.ctx.Done():
		return Result{MsgID: id}, classify(pl.ctx.Err(), 1)
	}
}

func (pl *Pipeline) retryAfter(pd pending, err error) (Result, error) {
	if !Retryable(err) || pl.Err() != nil {
		return Result{MsgID: pd.msg.Header.Get(MsgIDHeader)}, classify(err, 1)
	}
	return pl.p.retry(pl.ctx, copyMsg(pd.msg), 1, err)
}

func ackResult(ack *jetstream.PubAck, id string) Result {
	return Result{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate, MsgID: id, Attempts: 1}
}

// copyMsg gives a retry its own message: the async publisher keeps a reference to the
// one it sent.
func copyMsg(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	c.Data = m.Data
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	return c
}

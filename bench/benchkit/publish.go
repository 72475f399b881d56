package benchkit

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishAll publishes payloads on subject with async JetStream publishes (at most
// window in flight), each with a Nats-Msg-Id, and waits for every ack. It returns the
// stream sequence of the last one.
func PublishAll(ctx context.Context, js jetstream.JetStream, subject string, payloads [][]byte, window int) (uint64, error) {
	var last uint64
	futures := make([]jetstream.PubAckFuture, 0, window)
	drain := func() error {
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				last = max(last, ack.Sequence)
			case err := <-f.Err():
				return fmt.Errorf("publish: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	for _, p := range payloads {
		msg := &nats.Msg{Subject: subject, Data: p, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, RandomID())
		f, err := js.PublishMsgAsync(msg)
		if err != nil {
			return last, fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
		if len(futures) == window {
			if err := drain(); err != nil {
				return last, err
			}
		}
	}
	return last, drain()
}

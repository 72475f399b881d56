package ssf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/revoked-dev/revoked/publish"
)

// pollRequest is the body of a poll (RFC 8936 section 2.4).
type pollRequest struct {
	MaxEvents         int                  `json:"maxEvents"`
	ReturnImmediately bool                 `json:"returnImmediately"`
	Ack               []string             `json:"ack,omitempty"`
	SetErrs           map[string]pushError `json:"setErrs,omitempty"`
}

// pollResponse is the transmitter's answer: SETs by jti.
type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// Poll tuning: SETs asked for at once, the largest answer read, the backoff after an
// error (doubled up to its maximum, with jitter).
const (
	pollMaxEvents    = 100
	maxPollResponse  = 16 << 20
	pollBackoff      = time.Second
	maxPollBackoff   = time.Minute
	finalAckDeadline = 5 * time.Second
)

// pollLoop polls t until ctx ends. A SET's jti goes in the next poll's ack list only
// once its revocations are acknowledged by the stream; a refused SET goes in setErrs;
// a SET the stream did not acknowledge goes in neither, so the transmitter delivers it
// again. Before it returns it sends the acknowledgements it still holds.
func (r *Receiver) pollLoop(ctx context.Context, t *transmitter) {
	log := r.log.With("transmitter", t.cfg.Issuer)
	var ack []string
	setErrs := map[string]pushError{}
	failures := 0
	defer func() {
		if len(ack) == 0 && len(setErrs) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(context.Background(), finalAckDeadline)
		defer cancel()
		if _, err := r.pollOnce(fctx, t, pollRequest{ReturnImmediately: true, Ack: ack, SetErrs: setErrs}); err != nil {
			log.Warn("ssf final acknowledgement failed; the transmitter will deliver those SETs again", "acks", len(ack), "err", err)
		}
	}()
	for ctx.Err() == nil {
		if t.pollURL.Load() == nil { // a managed poll stream not created yet
			sleep(ctx, time.Duration(t.cfg.PollInterval))
			continue
		}
		resp, err := r.pollOnce(ctx, t, pollRequest{MaxEvents: pollMaxEvents, Ack: ack, SetErrs: setErrs})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			r.metrics.pollErrors.WithLabelValues(t.cfg.Issuer).Inc()
			wait := backoff(failures)
			log.Warn("ssf poll failed; retrying", "in", wait, "err", err)
			sleep(ctx, wait)
			continue
		}
		failures = 0
		r.metrics.lastPoll.WithLabelValues(t.cfg.Issuer).Set(float64(r.opts.Now().Unix()))
		ack, setErrs = nil, map[string]pushError{}
		unavailable := false
		n := 0
		for jti, raw := range resp.Sets {
			if n++; n > pollMaxEvents {
				break // a transmitter ignoring maxEvents delivers the rest again
			}
			if ctx.Err() != nil {
				break
			}
			err := r.receivePolled(ctx, t, jti, raw)
			var se *SETError
			switch {
			case err == nil:
				ack = append(ack, jti)
			case errors.As(err, &se):
				setErrs[jti] = pushError{Err: se.Code, Description: se.Description}
			case publish.FailureOf(err).Status == http.StatusRequestEntityTooLarge:
				// Its revocation is larger than the stream takes: delivering it again
				// cannot help, so the transmitter is told, as for a SET refused.
				setErrs[jti] = pushError{Err: CodeInvalidRequest, Description: publish.FailureOf(err).Description}
			default:
				// Not acknowledged, delivered again: an outage, or a set-up the operator
				// must fix (another stream on the subject), logged and counted.
				unavailable = true
			}
		}
		switch {
		case unavailable:
			sleep(ctx, backoff(1))
		case len(resp.Sets) == 0 && !resp.MoreAvailable:
			// A transmitter that answers long polls at once is not polled in a busy loop.
			sleep(ctx, time.Duration(t.cfg.PollInterval))
		}
	}
}

// receivePolled handles one polled SET; the key it came under must be its jti.
func (r *Receiver) receivePolled(ctx context.Context, t *transmitter, jti, raw string) error {
	if len(raw) > MaxSETSize {
		return r.refused(t, "none", jti, setErr(CodeInvalidRequest, "the SET is larger than 64 KiB"))
	}
	payload, err := payloadOf(raw)
	if err != nil {
		return r.refused(t, "none", jti, err)
	}
	var c struct {
		Jti string `json:"jti"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Jti != jti {
		return r.refused(t, "none", jti, setErr(CodeInvalidRequest, "the SET's jti is not the key it was delivered under"))
	}
	_, err = r.receive(ctx, t, raw)
	return err
}

// pollOnce sends one poll request and reads the answer.
func (r *Receiver) pollOnce(ctx context.Context, t *transmitter, body pollRequest) (*pollResponse, error) {
	u := t.pollURL.Load()
	if u == nil {
		return nil, errors.New("no poll endpoint")
	}
	b, _ := json.Marshal(body)
	res, err := r.send(ctx, t, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, *u, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxPollResponse+1))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll answered HTTP %d", res.StatusCode)
	}
	if len(data) > maxPollResponse {
		return nil, errors.New("poll answer larger than 16 MiB")
	}
	var out pollResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("poll answer is not RFC 8936 JSON: %.80s", err.Error())
	}
	return &out, nil
}

// backoff is the wait after the n-th failure in a row: doubling, capped, with jitter.
func backoff(n int) time.Duration {
	d := pollBackoff
	for i := 1; i < n && d < maxPollBackoff; i++ {
		d *= 2
	}
	d = min(d, maxPollBackoff)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

package ssf

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Delivery methods (SSF 1.0 section 6.1.1).
const (
	DeliveryPush = "urn:ietf:rfc:8935"
	DeliveryPoll = "urn:ietf:rfc:8936"
)

// Metadata is a transmitter's /.well-known/ssf-configuration (SSF 1.0 section 7.1).
type Metadata struct {
	Issuer                   string   `json:"issuer"`
	JWKSURI                  string   `json:"jwks_uri"`
	SpecVersion              string   `json:"spec_version,omitempty"`
	DeliveryMethodsSupported []string `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string   `json:"configuration_endpoint"`
	StatusEndpoint           string   `json:"status_endpoint,omitempty"`
	VerificationEndpoint     string   `json:"verification_endpoint,omitempty"`
}

// StreamConfig is a stream at the transmitter (SSF 1.0 section 8.1.1).
type StreamConfig struct {
	StreamID        string          `json:"stream_id,omitempty"`
	Iss             string          `json:"iss,omitempty"`
	Aud             json.RawMessage `json:"aud,omitempty"`
	Delivery        Delivery        `json:"delivery"`
	EventsSupported []string        `json:"events_supported,omitempty"`
	EventsRequested []string        `json:"events_requested,omitempty"`
	EventsDelivered []string        `json:"events_delivered,omitempty"`
	Description     string          `json:"description,omitempty"`
}

// Delivery is a stream's delivery method and endpoint.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// wellKnown is the metadata URL of issuer: /.well-known/ssf-configuration inserted
// before the issuer's path (SSF 1.0 section 7.2, as RFC 8414 does).
func wellKnown(issuer string) (string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return "", err
	}
	u.Path = "/.well-known/ssf-configuration" + strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// sameOrigin reports whether endpoint is on the issuer's scheme, host and port: the
// receiver's bearer token is sent nowhere else, whatever the metadata says.
func sameOrigin(issuer, endpoint string) bool {
	a, err1 := url.Parse(issuer)
	b, err2 := url.Parse(endpoint)
	return err1 == nil && err2 == nil && a.Scheme == b.Scheme && strings.EqualFold(a.Host, b.Host)
}

// manage keeps t's stream at the transmitter: discovery, the stream created or reused,
// a verification requested (again every verify_every), the status read. It retries
// with backoff until it succeeds, and returns when ctx ends.
func (r *Receiver) manage(ctx context.Context, t *transmitter) {
	log := r.log.With("transmitter", t.cfg.Issuer)
	var md *Metadata
	var st *StreamConfig
	for failures := 0; ctx.Err() == nil; {
		var err error
		if md == nil {
			md, err = r.discover(ctx, t)
		}
		if err == nil && st == nil {
			st, err = r.ensureStream(ctx, t, md)
		}
		if err == nil {
			r.readStatus(ctx, t, md, st)
			err = r.requestVerification(ctx, t, md, st)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := backoff(failures)
			log.Warn("ssf stream management failed; retrying", "in", wait, "err", err)
			sleep(ctx, wait)
			continue
		}
		failures = 0
		every := time.Duration(t.cfg.Stream.VerifyEvery)
		if every <= 0 {
			return
		}
		sleep(ctx, every)
	}
}

// discover reads the transmitter's metadata and checks that it is the issuer's.
func (r *Receiver) discover(ctx context.Context, t *transmitter) (*Metadata, error) {
	u, err := wellKnown(t.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var md Metadata
	if _, err := r.call(ctx, t, http.MethodGet, u, nil, &md, http.StatusOK); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if md.Issuer != t.cfg.Issuer {
		return nil, errors.New("discovery: the metadata's issuer is not the transmitter's")
	}
	for _, e := range []string{md.ConfigurationEndpoint, md.VerificationEndpoint, md.StatusEndpoint} {
		if e != "" && !sameOrigin(t.cfg.Issuer, e) {
			return nil, fmt.Errorf("discovery: endpoint %.100q is not on the issuer's origin; the receiver's token is not sent there", e)
		}
	}
	if md.ConfigurationEndpoint == "" {
		return nil, errors.New("discovery: the transmitter has no configuration_endpoint")
	}
	return &md, nil
}

// ensureStream reuses the transmitter's stream with this receiver's delivery, or
// creates it.
func (r *Receiver) ensureStream(ctx context.Context, t *transmitter, md *Metadata) (*StreamConfig, error) {
	want := Delivery{Method: DeliveryPush, EndpointURL: t.cfg.Stream.PushEndpoint}
	if t.cfg.Stream.Delivery == "poll" {
		want = Delivery{Method: DeliveryPoll}
	}
	var raw json.RawMessage
	code, err := r.call(ctx, t, http.MethodGet, md.ConfigurationEndpoint, nil, &raw, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return nil, fmt.Errorf("reading streams: %w", err)
	}
	var streams []StreamConfig
	if code == http.StatusOK {
		if err := json.Unmarshal(raw, &streams); err != nil {
			var one StreamConfig
			if json.Unmarshal(raw, &one) == nil && one.StreamID != "" {
				streams = []StreamConfig{one}
			}
		}
	}
	for i := range streams {
		s := &streams[i]
		if s.Delivery.Method == want.Method && (want.Method == DeliveryPoll || s.Delivery.EndpointURL == want.EndpointURL) {
			r.log.Info("ssf stream reused", "transmitter", t.cfg.Issuer, "stream_id", sanitize(s.StreamID))
			return r.adopt(t, s)
		}
	}
	if v := t.pushRaw.Load(); want.Method == DeliveryPush && v != nil {
		want.AuthorizationHeader = *v
	}
	req := StreamConfig{Delivery: want, EventsRequested: t.cfg.Stream.EventsRequested, Description: "revoked: revocations for Envoy ext_authz"}
	var created StreamConfig
	if _, err := r.call(ctx, t, http.MethodPost, md.ConfigurationEndpoint, req, &created, http.StatusCreated, http.StatusOK); err != nil {
		return nil, fmt.Errorf("creating the stream: %w", err)
	}
	r.log.Info("ssf stream created", "transmitter", t.cfg.Issuer, "stream_id", sanitize(created.StreamID), "events_delivered", len(created.EventsDelivered))
	return r.adopt(t, &created)
}

// adopt takes a stream's poll endpoint when none is configured.
func (r *Receiver) adopt(t *transmitter, s *StreamConfig) (*StreamConfig, error) {
	if s.StreamID == "" {
		return nil, errors.New("the transmitter's stream has no stream_id")
	}
	id := s.StreamID
	t.streamID.Store(&id)
	if s.Delivery.Method == DeliveryPoll && t.pollURL.Load() == nil {
		if !sameOrigin(t.cfg.Issuer, s.Delivery.EndpointURL) {
			return nil, fmt.Errorf("the stream's poll endpoint %.100q is not on the issuer's origin", s.Delivery.EndpointURL)
		}
		u := s.Delivery.EndpointURL
		t.pollURL.Store(&u)
	}
	return s, nil
}

// requestVerification asks the transmitter for a verification event with a fresh state.
func (r *Receiver) requestVerification(ctx context.Context, t *transmitter, md *Metadata, st *StreamConfig) error {
	if md.VerificationEndpoint == "" {
		return nil
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	state := hex.EncodeToString(b)
	t.state.Store(&state)
	body := map[string]string{"stream_id": st.StreamID, "state": state}
	if _, err := r.call(ctx, t, http.MethodPost, md.VerificationEndpoint, body, nil, http.StatusNoContent, http.StatusOK, http.StatusAccepted); err != nil {
		return fmt.Errorf("requesting verification: %w", err)
	}
	return nil
}

// readStatus reads the stream's status when the transmitter has a status endpoint.
func (r *Receiver) readStatus(ctx context.Context, t *transmitter, md *Metadata, st *StreamConfig) {
	if md.StatusEndpoint == "" {
		return
	}
	u := md.StatusEndpoint + "?stream_id=" + url.QueryEscape(st.StreamID)
	var out struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if _, err := r.call(ctx, t, http.MethodGet, u, nil, &out, http.StatusOK); err != nil {
		r.log.Info("ssf stream status unreadable", "transmitter", t.cfg.Issuer, "err", err)
		return
	}
	r.streamUpdated(t, out.Status, out.Reason, r.log.With("transmitter", t.cfg.Issuer))
}

// call sends one stream management request with the receiver's token and reads
// a JSON answer into out; it returns the status code, one of ok.
func (r *Receiver) call(ctx context.Context, t *transmitter, method, u string, in, out any, ok ...int) (int, error) {
	var b []byte
	if in != nil {
		var err error
		if b, err = json.Marshal(in); err != nil {
			return 0, err
		}
	}
	res, err := r.send(ctx, t, func() (*http.Request, error) {
		var body io.Reader
		if in != nil {
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	for _, c := range ok {
		if res.StatusCode == c {
			if out != nil && len(bytes.TrimSpace(data)) > 0 && c != http.StatusNotFound {
				if err := json.Unmarshal(data, out); err != nil {
					return c, fmt.Errorf("%s %s: answer is not the expected JSON", method, u)
				}
			}
			return c, nil
		}
	}
	return res.StatusCode, fmt.Errorf("%s %s: HTTP %d", method, u, res.StatusCode)
}

// Start begins, for each transmitter, its stream management (when configured) and its
// poll worker (when it is polled). They stop when ctx ends; Wait waits for them.
func (r *Receiver) Start(ctx context.Context) {
	r.wg.Go(func() { r.watch.Run(ctx, r.opts.SecretReload) })
	for _, t := range r.list {
		if t.cfg.Stream != nil {
			r.wg.Go(func() { r.manage(ctx, t) })
		}
		if t.cfg.PollEndpoint != "" || (t.cfg.Stream != nil && t.cfg.Stream.Delivery == "poll") {
			r.wg.Go(func() { r.pollLoop(ctx, t) })
		}
	}
}

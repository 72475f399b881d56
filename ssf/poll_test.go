package ssf_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/ssf/ssftest"
	"github.com/revoked-dev/revoked/stream"
)

// A polled transmitter (RFC 8936): good SETs are acknowledged once their revocations
// are in the stream, bad ones reported in setErrs, and nothing is acknowledged while the
// stream does not ack (the transmitter keeps them for the next poll).
func TestPollAcknowledgesOnlyAfterTheStreamAcks(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	ns := testsupport.StartNATS(t)
	js := ns.CreateStream(stream.Settings{})
	if err := js.DeleteStream(context.Background(), event.DefaultStream); err != nil {
		t.Fatal(err)
	}
	c := tr.Claims(ssftest.CredentialCompromise, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	good := tr.Sign(c, nil)
	c = tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u2")
	c["aud"] = "https://someone-else.example"
	bad := tr.Sign(c, nil)
	tr.Queue(good)
	tr.Queue(bad)

	e := start(t, ns, js, []*spec{tx})
	testsupport.Until(t, 10*time.Second, "bad SET reported", func() bool { return len(tr.SetErrs()) == 1 })
	testsupport.Until(t, 10*time.Second, "polled again", func() bool { return tr.Polls() >= 4 })
	if len(tr.Acked()) != 0 || tr.Pending() != 1 {
		t.Fatalf("acknowledged %v with no stream to ack it; pending %d", tr.Acked(), tr.Pending())
	}
	for _, se := range tr.SetErrs() {
		if se.Err != "invalid_audience" {
			t.Errorf("setErrs %+v", se)
		}
	}
	e.nats.CreateStream(stream.Settings{})
	testsupport.Until(t, 15*time.Second, "good SET acknowledged", func() bool { return len(tr.Acked()) == 1 })
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" || evs[0].Reason != "compromised" {
		t.Fatalf("stream %+v", evs)
	}
	if v := e.metric("revoked_ssf_poll_last_success_timestamp_seconds", map[string]string{"transmitter": tr.Issuer}); v == 0 {
		t.Error("no successful poll recorded")
	}
}

// A transmitter whose polls fail is polled again after a backoff; the SET is
// published once and acknowledged once a poll succeeds, and the failures are counted.
func TestPollRetriesFailedPolls(t *testing.T) {
	tr := ssftest.New(t, audience)
	tr.FailPolls(2)
	c := tr.Claims(ssftest.AccountPurged, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u3")
	tr.Queue(tr.Sign(c, nil))
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	start := time.Now()
	e := newEnv(t, tx)
	testsupport.Until(t, 15*time.Second, "acked", func() bool { return len(tr.Acked()) == 1 })
	if !slices.Equal(tr.Acked(), []string{c["jti"].(string)}) {
		t.Fatalf("acked %v", tr.Acked())
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("two failed polls retried within %s: no backoff", d)
	}
	if v := e.metric("revoked_ssf_poll_errors_total", map[string]string{"transmitter": tr.Issuer}); v != 2 {
		t.Errorf("poll errors %v", v)
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events", n)
	}
}

// Stream management (SSF 1.0): discovery, the stream created with this receiver's push
// endpoint and authorization, a verification requested and received through the push
// endpoint, the status read; a second start reuses the stream.
func TestManagedPushStream(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    stream: {delivery: push, push_endpoint: PUSH_URL}\n"}
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "verified", func() bool {
		return e.metric("revoked_ssf_stream_verified_timestamp_seconds", map[string]string{"transmitter": tr.Issuer}) > 0
	})
	streams := tr.Streams()
	if len(streams) != 1 || streams[0].Delivery["endpoint_url"] != e.url || streams[0].Delivery["authorization_header"] != tx.auth || len(streams[0].Verifications) != 1 {
		t.Fatalf("streams %+v", streams)
	}
	if v := e.metric("revoked_ssf_stream_status", map[string]string{"transmitter": tr.Issuer, "status": "enabled"}); v != 1 {
		t.Errorf("status %v", v)
	}
	// SSF 1.0 section 8.1.4.1: the state must be the one requested (invalid_state), and
	// the subject the receiver's stream; a transmitter may verify unasked, without state.
	verification := func(state, streamID string) string {
		ev := map[string]any{}
		if state != "" {
			ev["state"] = state
		}
		c := tr.Claims(ssftest.Verification, ev)
		c["sub_id"] = ssftest.Opaque(streamID)
		return tr.Sign(c, nil)
	}
	id := streams[0].StreamID
	for name, tc := range map[string]struct {
		set, code string
		status    int
	}{
		"wrong state":  {verification("not-the-state", id), "invalid_state", 400},
		"wrong stream": {verification("", "another-stream"), "invalid_request", 400},
		"unsolicited":  {verification("", id), "", 202},
		"right state":  {verification(streams[0].Verifications[0], id), "", 202},
	} {
		if code, errc := e.push(tx, tc.set); code != tc.status || errc != tc.code {
			t.Errorf("%s: %d %q, want %d %q", name, code, errc, tc.status, tc.code)
		}
	}
	// A restart (another receiver, at the same public URL) finds the stream and reuses it.
	again := &spec{tr: tr, extra: "    stream: {delivery: push, push_endpoint: " + e.url + "}\n"}
	newEnvOnNATS(t, e, again)
	testsupport.Until(t, 10*time.Second, "verification requested again", func() bool {
		s := tr.Streams()
		return len(s) > 1 || len(s[0].Verifications) == 2
	})
	if n := len(tr.Streams()); n != 1 {
		t.Fatalf("%d streams: the second start did not reuse the first", n)
	}
}

// A managed poll stream takes its poll endpoint from the transmitter and receives its
// verification event by polling.
func TestManagedPollStream(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    stream: {delivery: poll}\n    poll_interval: 50ms\n"}
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "verified by poll", func() bool {
		return e.metric("revoked_ssf_stream_verified_timestamp_seconds", map[string]string{"transmitter": tr.Issuer}) > 0
	})
	testsupport.Until(t, 10*time.Second, "verification acked", func() bool { return len(tr.Acked()) == 1 })
	if s := tr.Streams(); len(s) != 1 || s[0].Delivery["method"] != "urn:ietf:rfc:8936" {
		t.Fatalf("streams %+v", s)
	}
}

// Discovery refuses metadata whose issuer is not the transmitter's (SSF 1.0 section
// 7.2): no stream is created there, and the receiver's token goes nowhere else.
func TestDiscoveryRefusesAnotherIssuer(t *testing.T) {
	tr := ssftest.New(t, audience)
	tr.MetadataIssuer = "https://impostor.example"
	tx := &spec{tr: tr, extra: "    stream: {delivery: push, push_endpoint: PUSH_URL}\n"}
	e := newEnv(t, tx)
	testsupport.Until(t, 10*time.Second, "the refusal logged", func() bool {
		return strings.Contains(e.logs.String(), "the metadata's issuer is not the transmitter's")
	})
	if n := len(tr.Streams()); n != 0 {
		t.Fatalf("%d streams created at a transmitter whose metadata names another issuer", n)
	}
}

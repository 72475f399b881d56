package ssf_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// shrinkStream makes the stream refuse every event: larger than its max_msg_size.
func shrinkStream(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.MaxMsgSize = 64
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// A revocation the stream refuses for good (larger than it takes) is not answered 503,
// which a transmitter would retry for ever: 413, as the ingest API answers it
// (publish.FailureOf), without Retry-After.
func TestPushStreamRefusalIsNot503(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	shrinkStream(t, e)
	c := tx.tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u1")
	code, body, err := ssftest.Push(e.url, tx.auth, tx.tr.Sign(c, nil))
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusRequestEntityTooLarge || body["err"] != "too_large" {
		t.Fatalf("%d %v, want 413 too_large", code, body)
	}
	if v := e.metric("revoked_ssf_sets_received_total", map[string]string{"result": "refused_by_stream"}); v != 1 {
		t.Errorf("refused_by_stream counted %v times", v)
	}
}

// Polled, such a SET is reported in setErrs rather than left to be delivered for ever.
func TestPollStreamRefusalIsReported(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	e := newEnv(t, tx)
	shrinkStream(t, e)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 10*time.Second, "SET reported", func() bool { return len(tr.SetErrs()) == 1 })
	for _, se := range tr.SetErrs() {
		if se.Err != "invalid_request" {
			t.Errorf("setErrs %+v", se)
		}
	}
	if tr.Pending() != 0 || len(tr.Acked()) != 0 {
		t.Fatalf("pending %d, acked %v", tr.Pending(), tr.Acked())
	}
}

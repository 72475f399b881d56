package ingest

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// POST /ssf/events on the ingest API: a Keycloak session-revoked pushed by a
// configured transmitter lands in the stream as a sid cutoff; the endpoint is off
// without --ssf-transmitters.
func TestSSFEventsEndpoint(t *testing.T) {
	tr := ssftest.New(t, "https://revoked.example.com")
	dir := t.TempDir()
	auth := "Bearer ssf-push-secret-for-tests"
	yaml := fmt.Sprintf("transmitters:\n  - issuer: %s\n    jwks_uri: %s\n    audience: https://revoked.example.com\n    push_authorization_file: %s\n",
		tr.Issuer, tr.JWKSURI(), writeSecret(t, dir, "push", auth))
	f := newFixture(t, func(c *Config) { c.SSFTransmitters = writeSecret(t, dir, "ssf.yaml", yaml) })

	set := tr.Sign(tr.KeycloakSessionRevoked("user-1", "sess-1", f.srv.now()), nil)
	code, body, err := ssftest.Push(f.base+"/ssf/events", auth, set)
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("%d %v %v", code, body, err)
	}
	evs := f.events()
	if len(evs) != 1 || evs[0].Claim != "sid" || evs[0].Value != "sess-1" || evs[0].Source != "ssf:"+tr.Issuer {
		t.Fatalf("stream %+v", evs)
	}
	if got := f.metric("revoked_ingest_requests_total", map[string]string{"endpoint": "ssf_events", "code": "202"}); got != 1 {
		t.Errorf("requests metric %v", got)
	}
	if code, _, _ := ssftest.Push(f.base+"/ssf/events", "", set); code != http.StatusUnauthorized {
		t.Errorf("push without authorization: %d", code)
	}

	off := newFixture(t, nil)
	if code, _, _ := ssftest.Push(off.base+"/ssf/events", auth, set); code != http.StatusNotFound {
		t.Errorf("without --ssf-transmitters: %d", code)
	}
}

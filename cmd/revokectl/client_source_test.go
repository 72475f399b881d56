package main

import (
	"strings"
	"testing"
)

// revoke sub|sid --client-id restricts the cutoff to one client (CONTRACT section 2), and
// every event revokectl publishes says "source":"revokectl" unless an imported event
// names its own.
func TestRevokeClientScopeAndSource(t *testing.T) {
	srv, js := natsEnv(t)
	url := "--nats-url=" + srv.URL()
	r := cli(t, "", "revoke", "sub", "user-42", "--client-id", "billing-app", "--reason", "logout", url).want(t, exitOK)
	if !strings.Contains(r.stdout, `tokens of client "billing-app" with sub "user-42"`) {
		t.Errorf("stdout %q", r.stdout)
	}
	cli(t, "", "revoke", "sid", "s-9", "--client-id", "web", url).want(t, exitOK)
	cli(t, "", "revoke", "sub", "user-7", url).want(t, exitOK)
	cli(t, "", "revoke", "jti", "j-1", "--exp", "+1h", url).want(t, exitOK)
	// A client's own cutoff takes no client scope: revoke client already names it.
	cli(t, "", "revoke", "client", "billing-app", "--client-id", "web", url).want(t, exitUsage)

	file := writeFile(t, "events.jsonl",
		`{"type":"cutoff","claim":"sub","value":"u","not_before":1767222000,"client_id":"spa"}`+"\n"+
			`{"type":"jti","jti":"k","exp":1767225600,"source":"ssf:https://idp.example.com"}`+"\n")
	cli(t, "", "import", file, url).want(t, exitOK)

	evs := stored(t, js)
	if len(evs) != 6 {
		t.Fatalf("%d events, want 6: %+v", len(evs), evs)
	}
	wantClient := []string{"billing-app", "web", "", "", "spa", ""}
	wantSource := []string{"revokectl", "revokectl", "revokectl", "revokectl", "revokectl", "ssf:https://idp.example.com"}
	for i, ev := range evs {
		if ev.ClientID != wantClient[i] || ev.Source != wantSource[i] {
			t.Errorf("event %d: client_id %q, source %q; want %q, %q", i, ev.ClientID, ev.Source, wantClient[i], wantSource[i])
		}
	}
}

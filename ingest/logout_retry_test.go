package ingest

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/event"
)

// startReplica starts another ingest server on f's NATS server and stream: a second
// replica behind the same load balancer. mod changes its copy of f's configuration.
func startReplica(t *testing.T, f *fixture, mod func(*Config)) *Server {
	t.Helper()
	cfg := *f.cfg
	cfg.Listen, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	srv, err := Start(context.Background(), &cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	waitFor(t, 10*time.Second, func() bool { return srv.Ready(context.Background()) == nil })
	return srv
}

func postLogout(t *testing.T, srv *Server, tok string) (int, string) {
	t.Helper()
	res, err := http.PostForm("http://"+srv.Addr()+"/backchannel-logout", url.Values{"logout_token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, readAll(res)
}

// A logout naming two of our clients (--logout-cutoff client) publishes one cutoff
// each. When the stream stores the first and refuses the second (full: 503), the IdP
// sends the token again, here to another replica: there the first cutoff is a stream
// duplicate, which alone must not make the retry a replay, or the second client's
// cutoff would never be stored.
func TestBackchannelLogoutPartialPublishRetriedAtAnotherReplica(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.LogoutAudiences = []string{testRP, "rp-client-2"}
		c.LogoutCutoffs = []string{"client"}
	})
	// Room for one event: the stream (DiscardNew) refuses the second with a 503 error.
	restore := f.capStream(t, 1)
	tok := f.key.sign(t, logoutClaims("half-published", func(c jwt.MapClaims) {
		c["aud"] = []string{testRP, "rp-client-2"}
	}), logoutTyp)
	r := f.postForm("/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("second cutoff refused by the stream: %d %s", r.code, r.body)
	}
	if evs := f.events(); len(evs) != 1 {
		t.Fatalf("after the failure: stream %+v, want the first cutoff only", evs)
	}

	restore()
	second := startReplica(t, f, nil)
	if code, body := postLogout(t, second, tok); code != http.StatusOK {
		t.Fatalf("the IdP's retry at another replica: %d %s", code, body)
	}
	evs := f.events()
	var clients []string
	for _, ev := range evs {
		clients = append(clients, ev.ClientID)
	}
	slices.Sort(clients)
	if !slices.Equal(clients, []string{testRP, "rp-client-2"}) {
		t.Fatalf("stream %+v: want one cutoff for each client", evs)
	}

	// Both are stored now: the token is a replay at a replica that never saw it.
	third := startReplica(t, f, nil)
	if code, body := postLogout(t, third, tok); code != http.StatusBadRequest || !strings.Contains(body, "replayed") {
		t.Fatalf("replay once every cutoff is stored: %d %s", code, body)
	}
	if n := len(f.events()); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

// A client's cutoff has one event id whatever the order of aud and whichever of our
// other clients the token names, so that replicas (or a retry) agree on it, and the
// stream's duplicate window holds whatever the list position.
func TestBackchannelLogoutCutoffIDsFollowTheClient(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.LogoutAudiences = []string{testRP, "rp-client-2"}
		c.LogoutCutoffs = []string{"client"}
	})
	idsOf := func(srv *Server, aud []string) map[string]string {
		t.Helper()
		tok := f.key.sign(t, logoutClaims("same-logout", func(c jwt.MapClaims) { c["aud"] = aud }), logoutTyp)
		lt, err := srv.validateLogoutToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := srv.logoutEvents(lt)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		for _, ev := range evs {
			ids[ev.ClientID] = ev.EventID
		}
		return ids
	}
	forward := idsOf(f.srv, []string{testRP, "rp-client-2"})
	reversed := idsOf(f.srv, []string{"rp-client-2", testRP})
	if len(forward) != 2 || forward[testRP] == forward["rp-client-2"] || !maps.Equal(forward, reversed) {
		t.Fatalf("ids %v, reversed aud %v", forward, reversed)
	}
	// A replica that serves only the second client (its --logout-audience is being
	// changed) gives that client's cutoff the same id.
	narrow := startReplica(t, f, func(c *Config) { c.LogoutAudiences = []string{"rp-client-2"} })
	if got := idsOf(narrow, []string{testRP, "rp-client-2"}); len(got) != 1 || got["rp-client-2"] != forward["rp-client-2"] {
		t.Fatalf("one client's replica: ids %v, want rp-client-2's to be %s", got, forward["rp-client-2"])
	}
}

// The three endpoints answer a publish the stream refuses with one mapping
// (publishFailure): a full stream is 503 temporarily_unavailable with Retry-After,
// counted as a publish error of the endpoint; /v1/revocations says more about its
// array.
func TestPublishFailureAnsweredAlikeByEveryEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	f.capStream(t, 1)
	if r := f.postJSON(`{"type":"jti","jti":"fills-the-stream","exp":1767225600}`, bearer); r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	answers := map[string]resp{
		"revocations":        f.postJSON(`{"type":"jti","jti":"refused","exp":1767225600}`, bearer),
		"oauth2_revoke":      f.postForm("/oauth2/revoke", url.Values{"token": {f.key.sign(t, accessClaims("refused-7009", time.Now().Add(time.Hour)), nil)}}, bearer),
		"backchannel_logout": f.postForm("/backchannel-logout", url.Values{"logout_token": {f.key.sign(t, logoutClaims("refused-bcl", nil), logoutTyp)}}, nil),
	}
	for endpoint, r := range answers {
		if r.code != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || r.json(t)["error"] != "temporarily_unavailable" {
			t.Errorf("%s: %d %v %s", endpoint, r.code, r.header, r.body)
		}
		if got := f.metric("revoked_ingest_publish_errors_total", map[string]string{"endpoint": endpoint}); got != 1 {
			t.Errorf("%s: %v publish errors counted, want 1", endpoint, got)
		}
	}
	if d := answers["revocations"].json(t)["error_description"]; !strings.Contains(d.(string), "send the same request again") {
		t.Errorf("revocations: description %q", d)
	}
	if d := answers["oauth2_revoke"].json(t)["error_description"]; !strings.Contains(d.(string), "retry") {
		t.Errorf("oauth2_revoke: description %q", d)
	}
}

// capStream lets the stream hold at most n events (it refuses more: DiscardNew) and
// returns what puts its own limit back.
func (f *fixture) capStream(t *testing.T, n int64) (restore func()) {
	t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, event.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	capped := info.Config
	capped.MaxMsgs = n
	if _, err := f.js.UpdateStream(ctx, capped); err != nil {
		t.Fatal(err)
	}
	return func() {
		if _, err := f.js.UpdateStream(ctx, info.Config); err != nil {
			t.Fatal(err)
		}
	}
}

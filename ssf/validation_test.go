package ssf_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/ssf/ssftest"
	"github.com/revoked-dev/revoked/stream"
)

// Every bad SET is answered 400 with its RFC 8935 code and publishes nothing.
func TestBadSETsAreRefused(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	other := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx, other)
	forger := ssftest.New(t, audience) // another key under the same kid: a bad signature
	good := func() map[string]any {
		c := tx.tr.Claims(ssftest.CredentialChange, nil)
		c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u1")
		return c
	}
	with := func(k string, v any) map[string]any {
		c := good()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	forged := good()
	forger.Issuer = tx.tr.Issuer
	cases := map[string]struct {
		set  string
		code string
	}{
		"alg none":            {ssftest.Unsigned(good()), "invalid_key"},
		"bad signature":       {forger.Sign(forged, map[string]any{"kid": tx.tr.KID()}), "invalid_key"},
		"unknown kid":         {tx.tr.Sign(good(), map[string]any{"kid": "nope"}), "invalid_key"},
		"typ JWT":             {tx.tr.Sign(good(), map[string]any{"typ": "JWT"}), "invalid_request"},
		"no typ":              {tx.tr.Sign(good(), map[string]any{"typ": nil}), "invalid_request"},
		"exp present":         {tx.tr.Sign(with("exp", time.Now().Add(time.Hour).Unix()), nil), "invalid_request"},
		"two events":          {tx.tr.Sign(with("events", map[string]any{ssftest.CredentialChange: map[string]any{}, ssftest.AccountDisabled: map[string]any{}}), nil), "invalid_request"},
		"no events":           {tx.tr.Sign(with("events", map[string]any{}), nil), "invalid_request"},
		"event not an object": {tx.tr.Sign(with("events", map[string]any{ssftest.CredentialChange: "x"}), nil), "invalid_request"},
		"unknown iss":         {tx.tr.Sign(with("iss", "https://unknown.example"), nil), "invalid_issuer"},
		"wrong aud":           {tx.tr.Sign(with("aud", "https://someone-else.example"), nil), "invalid_audience"},
		"aud array":           {tx.tr.Sign(with("aud", []string{"https://x.example"}), nil), "invalid_audience"},
		"stale iat":           {tx.tr.Sign(with("iat", time.Now().Add(-25*time.Hour).Unix()), nil), "invalid_request"},
		"future iat":          {tx.tr.Sign(with("iat", time.Now().Add(time.Hour).Unix()), nil), "invalid_request"},
		"no iat":              {tx.tr.Sign(with("iat", nil), nil), "invalid_request"},
		"no jti":              {tx.tr.Sign(with("jti", nil), nil), "invalid_request"},
		"not a JWT":           {"hello", "invalid_request"},
		"crit header":         {tx.tr.Sign(good(), map[string]any{"crit": []string{"x"}, "x": 1}), "invalid_request"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, errc := e.push(tx, tc.set)
			if code != http.StatusBadRequest || errc != tc.code {
				t.Fatalf("%d %q, want 400 %q", code, errc, tc.code)
			}
		})
	}
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events published from bad SETs", n)
	}
	if v := e.metric("revoked_ssf_sets_received_total", map[string]string{"transmitter": tx.tr.Issuer, "result": "invalid_audience"}); v != 2 {
		t.Errorf("invalid_audience counted %v times", v)
	}
	// An array aud naming the receiver is fine.
	if code, errc := e.push(tx, tx.tr.Sign(with("aud", []string{"https://x.example", audience}), nil)); code != 202 {
		t.Fatalf("aud array with the receiver: %d %s", code, errc)
	}
}

// The push authorization decides who may push: none or a wrong one is 401, another
// transmitter's is 403; the content type and size are checked.
func TestPushAuthorizationAndRequestShape(t *testing.T) {
	a := &spec{tr: ssftest.New(t, audience)}
	b := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, a, b)
	c := a.tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(a.tr.Issuer, "u1")
	set := a.tr.Sign(c, nil)
	for name, auth := range map[string]string{"none": "", "wrong": "Bearer nope-nope-nope-nope", "prefix": a.auth[:len(a.auth)-1]} {
		code, body, err := ssftest.Push(e.url, auth, set)
		if err != nil || code != http.StatusUnauthorized || body["err"] != "authentication_failed" {
			t.Errorf("%s: %d %v %v", name, code, body, err)
		}
	}
	if code, errc := e.push(b, set); code != http.StatusForbidden || errc != "access_denied" {
		t.Errorf("another transmitter's authorization: %d %s", code, errc)
	}
	req := func(ctype, body string) int {
		r, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		r.Header.Set("Authorization", a.auth)
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := req("application/json", set); code != http.StatusBadRequest {
		t.Errorf("wrong content type: %d", code)
	}
	if code := req("application/secevent+jwt", strings.Repeat("a", 70<<10)); code != http.StatusBadRequest {
		t.Errorf("oversized: %d", code)
	}
	if code := req("application/secevent+jwt; charset=utf-8", set); code != http.StatusAccepted {
		t.Errorf("content type with a parameter: %d", code)
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events, want the one authorized push", n)
	}
}

// A SET delivered twice is acknowledged both times and stored once: by the receiver's
// memory, and across receivers (a restart, another replica) by its Nats-Msg-Id.
func TestReplayStoredOnce(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	c := tx.tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u1")
	set := tx.tr.Sign(c, nil)
	for i := 0; i < 3; i++ {
		if code, errc := e.push(tx, set); code != 202 {
			t.Fatalf("push %d: %d %s", i, code, errc)
		}
	}
	if v := e.metric("revoked_ssf_sets_received_total", map[string]string{"result": "replayed"}); v != 2 {
		t.Errorf("replayed %v", v)
	}
	// A second receiver on the same stream (no memory of the first) gets the same SET.
	f := newEnvOnNATS(t, e, tx)
	if code, errc := f.push(tx, set); code != 202 {
		t.Fatalf("second receiver: %d %s", code, errc)
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("the SET was stored %d times", n)
	}
	if v := f.metric("revoked_ssf_sets_received_total", map[string]string{"result": "duplicate"}); v != 1 {
		t.Errorf("the second receiver did not see a duplicate: %v", v)
	}
}

// 202 only after the stream's ack: with the stream gone a push is answered 503 and
// not remembered, so the transmitter's retry publishes it once the stream is back.
func TestPushAnswers503UntilTheStreamAcks(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	if err := e.js.DeleteStream(context.Background(), event.DefaultStream); err != nil {
		t.Fatal(err)
	}
	c := tx.tr.Claims(ssftest.AccountDisabled, nil)
	c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u1")
	set := tx.tr.Sign(c, nil)
	if code, errc := e.push(tx, set); code != http.StatusServiceUnavailable {
		t.Fatalf("without a stream: %d %s", code, errc)
	}
	e.nats.CreateStream(stream.Settings{})
	if code, errc := e.push(tx, set); code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", code, errc)
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" {
		t.Fatalf("stream %+v", evs)
	}
}

// A rotated push authorization file takes effect without a restart; the old value no
// longer authenticates, and a file turned too short keeps the value held.
func TestPushAuthorizationRotates(t *testing.T) {
	tx := &spec{tr: ssftest.New(t, audience)}
	e := newEnv(t, tx)
	c := tx.tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tx.tr.Issuer, "u1")
	set := tx.tr.Sign(c, nil)
	old := tx.auth
	rotated := "Bearer rotated-push-secret-0123456789"
	writeFile(t, filepath.Dir(tx.file), filepath.Base(tx.file), rotated)
	testsupport.Until(t, 5*time.Second, "rotated secret accepted", func() bool {
		code, _, _ := ssftest.Push(e.url, rotated, set)
		return code == http.StatusAccepted
	})
	if code, _, _ := ssftest.Push(e.url, old, set); code != http.StatusUnauthorized {
		t.Fatalf("the old push authorization still works: %d", code)
	}
	writeFile(t, filepath.Dir(tx.file), filepath.Base(tx.file), "short")
	testsupport.Until(t, 5*time.Second, "bad file logged", func() bool { return strings.Contains(e.logs.String(), "ssf secret reload failed") })
	if code, _, _ := ssftest.Push(e.url, rotated, set); code != http.StatusAccepted {
		t.Fatalf("a broken file dropped the secret held: %d", code)
	}
}

// A SET that arrives before the transmitter's keys could be fetched is answered 503,
// not refused: a refusal would make the transmitter drop the revocation. Once the keys
// load, its retry is published.
func TestKeysNotLoadedIs503(t *testing.T) {
	tr := ssftest.New(t, audience)
	tr.FailJWKS(true)
	tx := &spec{tr: tr, down: true}
	e := newEnv(t, tx)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	set := tr.Sign(c, nil)
	if code, errc := e.push(tx, set); code != http.StatusServiceUnavailable {
		t.Fatalf("before the keys: %d %s", code, errc)
	}
	if e.rx.Ready(context.Background()) == nil {
		t.Fatal("ready without the transmitter's keys")
	}
	tr.FailJWKS(false)
	testsupport.Until(t, 10*time.Second, "keys loaded", func() bool { return e.rx.Ready(context.Background()) == nil })
	if code, errc := e.push(tx, set); code != http.StatusAccepted {
		t.Fatalf("after the keys: %d %s", code, errc)
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events", n)
	}
}

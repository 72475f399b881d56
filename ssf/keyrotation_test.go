package ssf_test

import (
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/ssf/ssftest"
)

// A transmitter that rotates its signing key is heard from its first SET under the new
// key, pushed or polled: the receiver fetches the keys again and waits (at most 5 s)
// rather than refusing the SET, which would make the transmitter drop the revocation.
// Without the wait, a second rotation within jwtkeys' 10 s refresh limit, or a key the
// JWKS lists a moment after the first SET it signs, is answered 400 invalid_key.
func TestRotatedKeyIsWaitedFor(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr}
	e := newEnv(t, tx)
	credentialChange := func(user string) string {
		c := tr.Claims(ssftest.CredentialChange, nil)
		c["sub_id"] = ssftest.IssSub(tr.Issuer, user)
		return tr.Sign(c, nil)
	}
	pushed := 0
	accept := func(what, set string) {
		t.Helper()
		if code, errc := e.push(tx, set); code != http.StatusAccepted {
			t.Fatalf("%s: %d %s, want 202", what, code, errc)
		}
		pushed++
	}

	tr.RotateKey(0)
	accept("first rotation", credentialChange("u1"))
	tr.RotateKey(0)
	accept("second rotation within 10 s", credentialChange("u2"))
	tr.RotateKey(1500 * time.Millisecond)
	accept("key listed after the SET it signs", credentialChange("u3"))

	// Several SETs under a new key at once: those that miss the first fetch wait for it
	// (or the next) instead of being refused.
	tr.RotateKey(300 * time.Millisecond)
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		set := credentialChange("burst")
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = ssftest.Push(e.url, tx.auth, set)
		}()
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusAccepted {
			t.Fatalf("burst SET %d: %d, want 202", i, code)
		}
	}
	if got, want := len(e.events()), pushed+len(codes); got != want { // one event per SET (its id is the SET's)
		t.Fatalf("%d events in the stream, want %d", got, want)
	}

	// A kid the transmitter never publishes is refused after the bounded wait.
	start := time.Now()
	if code, errc := e.push(tx, tr.Sign(tr.Claims(ssftest.CredentialChange, map[string]any{}), map[string]any{"kid": "never"})); code != http.StatusBadRequest || errc != "invalid_key" {
		t.Fatalf("unknown kid: %d %s, want 400 invalid_key", code, errc)
	}
	if took := time.Since(start); took > 7*time.Second {
		t.Fatalf("an unknown kid waited %s", took)
	}
}

// The same for a polled transmitter: the SET under the new key is acknowledged, not
// reported in setErrs.
func TestRotatedKeyIsWaitedForWhenPolled(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	e := newEnv(t, tx)
	tr.RotateKey(0)
	tr.RotateKey(1500 * time.Millisecond)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 15*time.Second, "SET acknowledged or refused", func() bool {
		return len(tr.Acked())+len(tr.SetErrs()) > 0
	})
	if len(tr.SetErrs()) != 0 {
		t.Fatalf("refused: %+v", tr.SetErrs())
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" {
		t.Fatalf("stream %+v", evs)
	}
}

// A transmitter whose keys are a local jwks_file: the file, rotated, is read again for
// the first SET under the new key, not at the next poll of the file (every 10 s).
func TestRotatedKeyFileIsReadAgain(t *testing.T) {
	tr := ssftest.New(t, audience)
	file := filepath.Join(t.TempDir(), "jwks.json")
	copyJWKS := func() {
		t.Helper()
		res, err := http.Get(tr.JWKSURI())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Dir(file), filepath.Base(file), string(b))
	}
	copyJWKS()
	tx := &spec{tr: tr, jwks: file}
	e := newEnv(t, tx)
	tr.RotateKey(0)
	copyJWKS()
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	if code, errc := e.push(tx, tr.Sign(c, nil)); code != http.StatusAccepted {
		t.Fatalf("first SET under the new key: %d %s, want 202", code, errc)
	}
}

// A kid the transmitter never publishes holds a poll batch for one wait, not one each:
// after a full wait it is refused at once for a while.
func TestUnknownKidWaitsOncePerBatch(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	for i := 0; i < 4; i++ {
		c := tr.Claims(ssftest.CredentialChange, nil)
		c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
		tr.Queue(tr.Sign(c, map[string]any{"kid": "never"}))
	}
	start := time.Now()
	newEnv(t, tx)
	testsupport.Until(t, 30*time.Second, "SETs refused", func() bool { return len(tr.SetErrs()) == 4 })
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("4 SETs under an unknown kid took %s: each waited", took)
	}
	for _, se := range tr.SetErrs() {
		if se.Err != "invalid_key" {
			t.Fatalf("setErrs %+v", se)
		}
	}
}

// A SET under a new kid while the transmitter's JWKS endpoint fails is answered 503,
// not 400 invalid_key: the kid may be in the JWKS we could not fetch, and a 400 makes
// the transmitter drop the revocation. Its retry, once the JWKS answers, is published.
func TestRotatedKeyWhileJWKSFailsIs503(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr}
	e := newEnv(t, tx)
	tr.RotateKey(0)
	tr.FailJWKS(true)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	set := tr.Sign(c, nil)
	if code, errc := e.push(tx, set); code != http.StatusServiceUnavailable {
		t.Fatalf("while the JWKS fails: %d %s, want 503", code, errc)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("published while refused: %+v", evs)
	}
	tr.FailJWKS(false)
	// Retried as a transmitter does after a 503 (Retry-After: 1): never refused.
	testsupport.Until(t, 15*time.Second, "retry accepted", func() bool {
		code, errc := e.push(tx, set)
		if code != http.StatusAccepted && code != http.StatusServiceUnavailable {
			t.Fatalf("retry with the JWKS back: %d %s, want 202 (or 503 for a moment)", code, errc)
		}
		return code == http.StatusAccepted
	})
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" {
		t.Fatalf("stream %+v", evs)
	}
}

// Polled, such a SET is neither acknowledged nor reported in setErrs: it is delivered
// again, and acknowledged once the JWKS answers.
func TestRotatedKeyWhileJWKSFailsIsNotAckedWhenPolled(t *testing.T) {
	tr := ssftest.New(t, audience)
	tx := &spec{tr: tr, extra: "    poll_endpoint: " + tr.PollURL() + "\n    poll_interval: 50ms\n"}
	e := newEnv(t, tx)
	tr.RotateKey(0)
	tr.FailJWKS(true)
	c := tr.Claims(ssftest.CredentialChange, nil)
	c["sub_id"] = ssftest.IssSub(tr.Issuer, "u1")
	tr.Queue(tr.Sign(c, nil))
	testsupport.Until(t, 20*time.Second, "SET handled once", func() bool {
		return len(tr.SetErrs()) > 0 || len(tr.Acked()) > 0 ||
			e.metric("revoked_ssf_sets_received_total", map[string]string{"result": "unavailable"}) >= 2
	})
	if len(tr.SetErrs()) != 0 || len(tr.Acked()) != 0 || tr.Pending() != 1 {
		t.Fatalf("while the JWKS fails: setErrs %+v, acked %v, pending %d", tr.SetErrs(), tr.Acked(), tr.Pending())
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("published: %+v", evs)
	}
	tr.FailJWKS(false)
	testsupport.Until(t, 20*time.Second, "SET acknowledged", func() bool { return len(tr.Acked()) == 1 })
	if len(tr.SetErrs()) != 0 {
		t.Fatalf("refused: %+v", tr.SetErrs())
	}
	if evs := e.events(); len(evs) != 1 || evs[0].Value != "u1" {
		t.Fatalf("stream %+v", evs)
	}
}

// Package ssftest is a Shared Signals transmitter for tests (SSF 1.0): it signs SETs
// (RFC 8417) in the shapes real transmitters send (Keycloak, Okta, Google's RISC), and
// serves what a receiver talks to: /.well-known/ssf-configuration, the JWKS, stream
// management (/streams, /verify, /status) and poll delivery (/poll, RFC 8936). It
// pushes SETs (RFC 8935) to a receiver's URL. It does not import package ssf, so that
// ssf's own tests can use it.
package ssftest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Event type URIs (the same as package ssf's).
const (
	SessionRevoked       = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	CredentialChange     = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	AccountDisabled      = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	AccountPurged        = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	CredentialCompromise = "https://schemas.openid.net/secevent/risc/event-type/credential-compromise"
	SessionsRevoked      = "https://schemas.openid.net/secevent/risc/event-type/sessions-revoked"
	TokensRevoked        = "https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked"
	Verification         = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	StreamUpdated        = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// Transmitter is an SSF transmitter on a local HTTP server. Its issuer is the server's
// URL unless Issuer is changed before use.
type Transmitter struct {
	Issuer   string // the SETs' iss and the metadata's issuer
	Audience string // the aud of its SETs
	Bearer   string // the receiver's token at its management and poll endpoints
	Server   *httptest.Server
	// MetadataIssuer, when set, is the issuer its metadata claims (a mismatch a
	// receiver must refuse).
	MetadataIssuer string

	rsa     bool
	ec      *ecdsa.PrivateKey
	rk      *rsa.PrivateKey
	kid     string
	shownAt time.Time           // when its JWKS starts listing the current key
	old     []map[string]string // keys it signed with before, still in its JWKS
	mu      sync.Mutex
	seq     int
	strm    map[string]*Stream
	// poll delivery
	pending []string          // jtis in order
	sets    map[string]string // jti -> SET
	acked   []string
	errs    map[string]SetErr
	polls   int
	fail    int  // polls still to answer 500
	jwksErr bool // the JWKS answers 500
	// accept, when set, decides which bearer tokens its endpoints take instead of Bearer.
	accept  func(token string) bool
	refused int // requests answered 401
}

// Stream is a stream the transmitter holds for a receiver.
type Stream struct {
	StreamID        string         `json:"stream_id"`
	Iss             string         `json:"iss"`
	Aud             string         `json:"aud"`
	Delivery        map[string]any `json:"delivery"`
	EventsRequested []string       `json:"events_requested,omitempty"`
	EventsDelivered []string       `json:"events_delivered,omitempty"`
	Verifications   []string       `json:"-"` // states requested
}

// SetErr is a SET the receiver reported as bad in a poll.
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// Option changes a Transmitter.
type Option func(*Transmitter)

// WithRSA signs with RS256 (Google) instead of ES256.
func WithRSA() Option { return func(t *Transmitter) { t.rsa = true } }

// New starts a transmitter; it stops when the test ends.
func New(tb testing.TB, audience string, opts ...Option) *Transmitter {
	tb.Helper()
	t := &Transmitter{Audience: audience, Bearer: "receiver-token-" + randHex(8),
		strm: map[string]*Stream{}, sets: map[string]string{}, errs: map[string]SetErr{}}
	for _, o := range opts {
		o(t)
	}
	if err := t.newKey(); err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", t.metadata)
	mux.HandleFunc("GET /jwks", t.jwks)
	mux.HandleFunc("GET /streams", t.auth(t.listStreams))
	mux.HandleFunc("POST /streams", t.auth(t.createStream))
	mux.HandleFunc("POST /verify", t.auth(t.verify))
	mux.HandleFunc("GET /status", t.auth(t.status))
	mux.HandleFunc("POST /poll", t.auth(t.poll))
	t.Server = httptest.NewServer(mux)
	t.Issuer = t.Server.URL
	tb.Cleanup(t.Server.Close)
	return t
}

// JWKSURI is the URL of its keys.
func (t *Transmitter) JWKSURI() string { return t.Server.URL + "/jwks" }

// PollURL is its poll endpoint.
func (t *Transmitter) PollURL() string { return t.Server.URL + "/poll" }

// Claims returns a SET's claims: iss, aud, iat now, a fresh jti, and one event.
func (t *Transmitter) Claims(eventType string, ev map[string]any) map[string]any {
	if ev == nil {
		ev = map[string]any{}
	}
	return map[string]any{
		"iss": t.Issuer, "aud": t.Audience, "iat": time.Now().Unix(), "jti": randHex(12),
		"events": map[string]any{eventType: ev},
	}
}

// Sign signs claims as a SET: typ secevent+jwt and the key's kid; header entries
// replace those (a nil value removes one).
func (t *Transmitter) Sign(claims map[string]any, header map[string]any) string {
	t.mu.Lock()
	method := jwt.SigningMethod(jwt.SigningMethodES256)
	var key crypto.Signer = t.ec
	if t.rsa {
		method, key = jwt.SigningMethodRS256, t.rk
	}
	kid := t.kid
	t.mu.Unlock()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	tok.Header["typ"] = "secevent+jwt"
	tok.Header["kid"] = kid
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// Unsigned returns claims as an alg none JWT.
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "secevent+jwt"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// IssSub is an iss_sub subject identifier.
func IssSub(iss, sub string) map[string]any {
	return map[string]any{"format": "iss_sub", "iss": iss, "sub": sub}
}

// Opaque is an opaque subject identifier.
func Opaque(id string) map[string]any { return map[string]any{"format": "opaque", "id": id} }

// KeycloakSessionRevoked is Keycloak's session-revoked: sub_id complex with the user
// (iss_sub, the realm as iss) and the session (opaque; "ALL" after an admin's "log out
// all sessions"), event_timestamp in seconds.
func (t *Transmitter) KeycloakSessionRevoked(user, session string, at time.Time) map[string]any {
	c := t.Claims(SessionRevoked, map[string]any{
		"event_timestamp": at.Unix(), "initiating_entity": "admin",
		"reason_admin": map[string]any{"en": "Logout"},
	})
	c["sub_id"] = map[string]any{"format": "complex", "user": IssSub(t.Issuer, user), "session": Opaque(session)}
	return c
}

// OktaSessionRevoked is Okta's shape: the subject inside the event and the
// event_timestamp in milliseconds.
func (t *Transmitter) OktaSessionRevoked(userID string, at time.Time) map[string]any {
	return t.Claims(SessionRevoked, map[string]any{
		"subject":         IssSub(t.Issuer, userID),
		"event_timestamp": at.UnixMilli(), "initiating_entity": "policy",
		"reason_admin": map[string]any{"en": "Admin revoked sessions"},
	})
}

// GoogleRISC is Google's RISC shape: the subject inside the event with subject_type.
func (t *Transmitter) GoogleRISC(eventType, sub string) map[string]any {
	return t.Claims(eventType, map[string]any{
		"subject": map[string]any{"subject_type": "iss-sub", "iss": t.Issuer, "sub": sub},
	})
}

// Push POSTs a SET to url with the authorization header (RFC 8935) and returns the
// status and the decoded error body, if any.
func Push(url, authorization, set string) (int, map[string]string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(set))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var body map[string]string
	_ = json.Unmarshal(b, &body)
	return res.StatusCode, body, nil
}

// Queue makes a SET available to polls, under its jti.
func (t *Transmitter) Queue(set string) {
	parts := bytes.Split([]byte(set), []byte("."))
	payload, _ := base64.RawURLEncoding.DecodeString(string(parts[1]))
	var c struct {
		Jti string `json:"jti"`
	}
	_ = json.Unmarshal(payload, &c)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = append(t.pending, c.Jti)
	t.sets[c.Jti] = set
}

// Acked returns the jtis the receiver acknowledged, in order.
func (t *Transmitter) Acked() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.acked...)
}

// SetErrs returns the SETs the receiver reported as bad.
func (t *Transmitter) SetErrs() map[string]SetErr {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]SetErr{}
	for k, v := range t.errs {
		out[k] = v
	}
	return out
}

// Pending is how many queued SETs are neither acknowledged nor reported.
func (t *Transmitter) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// FailPolls makes the next n polls fail with HTTP 500 (their acks are lost too).
func (t *Transmitter) FailPolls(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fail = n
}

// Polls is how many polls it answered.
func (t *Transmitter) Polls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.polls
}

// Streams returns the streams receivers created.
func (t *Transmitter) Streams() []Stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Stream
	for _, s := range t.strm {
		out = append(out, *s)
	}
	return out
}

func (t *Transmitter) metadata(w http.ResponseWriter, _ *http.Request) {
	iss := t.Issuer
	if t.MetadataIssuer != "" {
		iss = t.MetadataIssuer
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"spec_version": "1_0", "issuer": iss, "jwks_uri": t.JWKSURI(),
		"delivery_methods_supported": []string{"urn:ietf:rfc:8935", "urn:ietf:rfc:8936"},
		"configuration_endpoint":     t.Server.URL + "/streams",
		"status_endpoint":            t.Server.URL + "/status",
		"verification_endpoint":      t.Server.URL + "/verify",
		"authorization_schemes":      []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}},
	})
}

// FailJWKS makes its JWKS answer 500 (on) or its keys (off).
func (t *Transmitter) FailJWKS(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.jwksErr = on
}

func (t *Transmitter) jwks(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	failing := t.jwksErr
	t.mu.Unlock()
	if failing {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "unavailable"})
		return
	}
	t.mu.Lock()
	keys := []any{}
	for _, k := range t.old {
		keys = append(keys, k)
	}
	if !time.Now().Before(t.shownAt) {
		keys = append(keys, t.jwk())
	}
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// jwk is the current key's public JWK; t.mu held (or t not yet shared).
func (t *Transmitter) jwk() map[string]string {
	var k map[string]string
	if t.rsa {
		k = map[string]string{"kty": "RSA", "alg": "RS256",
			"n": b64(t.rk.N.Bytes()), "e": b64(big.NewInt(int64(t.rk.E)).Bytes())}
	} else {
		pad := func(b []byte) []byte { return append(make([]byte, 32-len(b)), b...) }
		k = map[string]string{"kty": "EC", "crv": "P-256", "alg": "ES256",
			"x": b64(pad(t.ec.X.Bytes())), "y": b64(pad(t.ec.Y.Bytes()))}
	}
	k["kid"], k["use"] = t.kid, "sig"
	return k
}

// newKey generates the signing key and its kid; t.mu held (or t not yet shared).
func (t *Transmitter) newKey() error {
	var err error
	if t.rsa {
		t.rk, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		t.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	t.kid = "k-" + randHex(4)
	return err
}

// RotateKey makes the transmitter sign with a new key, under a new kid, from now on.
// Its JWKS keeps the old keys and lists the new one only once visibleAfter has passed:
// a transmitter may sign with a key a moment before its JWKS (behind a cache) shows it.
func (t *Transmitter) RotateKey(visibleAfter time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.old = append(t.old, t.jwk())
	if err := t.newKey(); err != nil {
		panic(err)
	}
	t.shownAt = time.Now().Add(visibleAfter)
}

// AcceptBearer makes its management and poll endpoints take the bearer tokens ok
// accepts, instead of Bearer: access tokens an OAuth authorization server issued (the
// test's), which expire. nil: Bearer again.
func (t *Transmitter) AcceptBearer(ok func(token string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accept = ok
}

// Refused is how many requests its management and poll endpoints answered 401.
func (t *Transmitter) Refused() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused
}

func (t *Transmitter) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		accept := t.accept
		t.mu.Unlock()
		header := r.Header.Get("Authorization")
		token, isBearer := strings.CutPrefix(header, "Bearer ")
		ok := header == "Bearer "+t.Bearer
		if accept != nil {
			ok = isBearer && accept(token)
		}
		if !ok {
			t.mu.Lock()
			t.refused++
			t.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
			return
		}
		h(w, r)
	}
}

func (t *Transmitter) listStreams(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []*Stream{}
	for _, s := range t.strm {
		out = append(out, s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (t *Transmitter) createStream(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Delivery        map[string]any `json:"delivery"`
		EventsRequested []string       `json:"events_requested"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Delivery == nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	s := &Stream{StreamID: "stream-" + randHex(4), Iss: t.Issuer, Aud: t.Audience, Delivery: req.Delivery,
		EventsRequested: req.EventsRequested, EventsDelivered: req.EventsRequested}
	if s.Delivery["method"] == "urn:ietf:rfc:8936" {
		s.Delivery["endpoint_url"] = t.PollURL()
	}
	t.strm[s.StreamID] = s
	writeJSON(w, http.StatusCreated, s)
}

// verify answers a verification request with a verification SET carrying the state:
// pushed to a push stream's endpoint, queued for a poll stream.
func (t *Transmitter) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	t.mu.Lock()
	s, ok := t.strm[req.StreamID]
	if ok {
		s.Verifications = append(s.Verifications, req.State)
	}
	t.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
		return
	}
	c := t.Claims(Verification, map[string]any{"state": req.State})
	c["sub_id"] = map[string]any{"format": "opaque", "id": s.StreamID}
	set := t.Sign(c, nil)
	w.WriteHeader(http.StatusNoContent)
	if s.Delivery["method"] == "urn:ietf:rfc:8935" {
		url, _ := s.Delivery["endpoint_url"].(string)
		auth, _ := s.Delivery["authorization_header"].(string)
		go func() { _, _, _ = Push(url, auth, set) }()
		return
	}
	t.Queue(set)
}

func (t *Transmitter) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"stream_id": r.URL.Query().Get("stream_id"), "status": "enabled"})
}

// poll is RFC 8936 section 2.4: acks and setErrs first, then up to maxEvents SETs;
// with nothing to give and returnImmediately false, it holds the request a moment.
func (t *Transmitter) poll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		MaxEvents         *int              `json:"maxEvents"`
		ReturnImmediately bool              `json:"returnImmediately"`
		Ack               []string          `json:"ack"`
		SetErrs           map[string]SetErr `json:"setErrs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"err": "invalid_request"})
		return
	}
	take := func() map[string]string {
		t.mu.Lock()
		defer t.mu.Unlock()
		out := map[string]string{}
		max := 100
		if req.MaxEvents != nil {
			max = *req.MaxEvents
		}
		for _, jti := range t.pending {
			if len(out) >= max {
				break
			}
			out[jti] = t.sets[jti]
		}
		return out
	}
	t.mu.Lock()
	t.polls++
	if t.fail > 0 {
		t.fail--
		t.mu.Unlock()
		writeJSON(w, http.StatusInternalServerError, map[string]string{"err": "server_error"})
		return
	}
	done := map[string]bool{}
	for _, jti := range req.Ack {
		t.acked = append(t.acked, jti)
		done[jti] = true
	}
	for jti, e := range req.SetErrs {
		t.errs[jti] = e
		done[jti] = true
	}
	kept := t.pending[:0]
	for _, jti := range t.pending {
		if !done[jti] {
			kept = append(kept, jti)
		}
	}
	t.pending = kept
	t.mu.Unlock()
	sets := take()
	for i := 0; len(sets) == 0 && !req.ReturnImmediately && i < 20; i++ {
		time.Sleep(10 * time.Millisecond)
		sets = take()
	}
	writeJSON(w, http.StatusOK, map[string]any{"sets": sets, "moreAvailable": false})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// KID is the kid of its signing key.
func (t *Transmitter) KID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kid
}

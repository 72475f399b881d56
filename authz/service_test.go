package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

// New wires one decision behind both transports: the same token gets the same answer
// over gRPC and HTTP, the subject header reaches the app on both, and every check is
// counted in the one registry.
func TestNewServesBothTransports(t *testing.T) {
	e := newTestEnv(t)
	reg := prometheus.NewRegistry()
	svc := New(e.keys, e.set, Config{
		Verify:         VerifierConfig{Issuers: []string{testIss}, Audiences: []string{testAud}},
		TokenCacheSize: 10,
		SubjectHeader:  "x-revoked-sub",
		Registerer:     reg,
	})
	tok := e.rsa.Token("user-1", time.Hour, nil)
	check := func(header string) (grpcStatus int32, httpStatus int, sub string) {
		r := envoyreq.Request{Headers: map[string]string{}}
		if header != "" {
			r.Headers["authorization"] = header
		}
		resp, err := svc.GRPC.Check(context.Background(), envoyreq.Check(r))
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		svc.HTTP.ServeHTTP(rec, req)
		return resp.GetStatus().GetCode(), rec.Code, rec.Header().Get("X-Revoked-Sub")
	}

	if g, h, _ := check("Bearer " + tok); g == 0 || h != http.StatusServiceUnavailable {
		t.Fatalf("before the gate opens: grpc code %d, http %d; want both closed (503)", g, h)
	}
	svc.SetGate(ReasonOK)
	if g, h, sub := check("Bearer " + tok); g != 0 || h != http.StatusOK || sub != "user-1" {
		t.Fatalf("valid token: grpc code %d, http %d, sub %q", g, h, sub)
	}
	if g, h, _ := check(""); g == 0 || h != http.StatusUnauthorized {
		t.Fatalf("no token: grpc code %d, http %d", g, h)
	}
	if n := testutil.CollectAndCount(reg, "revoked_checks_total"); n == 0 {
		t.Fatal("checks not counted in the registry New was given")
	}
}

package main

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// recordingAuthz is an ext_authz server that records the requests it gets, allows the
// token "good" and denies every other as the sidecar denies a revoked one.
type recordingAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu   sync.Mutex
	reqs []*authv3.CheckRequest
}

func (s *recordingAuthz) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] == "Bearer good" {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-revoked-sub", Value: "user-42"}}},
			}},
		}, nil
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.Unauthenticated), Message: "token revoked"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{
				Key: "www-authenticate", Value: `Bearer error="invalid_token", error_description="token revoked"`,
			}}},
		}},
	}, nil
}

func startAuthz(t *testing.T) (*recordingAuthz, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	rec := &recordingAuthz{}
	authv3.RegisterAuthorizationServer(s, rec)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.GracefulStop)
	return rec, lis.Addr().String()
}

func TestCheck(t *testing.T) {
	rec, addr := startAuthz(t)
	r := cli(t, "", "check", "--addr", addr, "good").want(t, exitOK)
	if !strings.HasPrefix(r.stdout, "allow\n") || !strings.Contains(r.stdout, "x-revoked-sub: user-42") {
		t.Errorf("allow printed %q", r.stdout)
	}
	r = cli(t, "revoked-token\n", "check", "-", "--addr", addr, "--path", "/orders?id=1", "--method", "POST").want(t, exitFailed)
	if r.stdout != "deny: 401 Unauthorized: token revoked\n  www-authenticate: Bearer error=\"invalid_token\", error_description=\"token revoked\"\n" {
		t.Errorf("deny printed %q", r.stdout)
	}
	if len(rec.reqs) != 2 {
		t.Fatalf("%d requests", len(rec.reqs))
	}
	h := rec.reqs[1].GetAttributes().GetRequest().GetHttp()
	if h.GetHeaders()["authorization"] != "Bearer revoked-token" || h.GetHeaders()[":path"] != "/orders?id=1" ||
		h.GetMethod() != "POST" || h.GetHeaders()[":method"] != "POST" || h.GetQuery() != "id=1" {
		t.Errorf("request as sent: %v", h)
	}

	// No sidecar there: exit 3, not a denial.
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := lis.Addr().String()
	lis.Close()
	r = cli(t, "", "check", "--addr", dead, "--timeout", "300ms", "good").want(t, exitNoCheck)
	if r.stdout != "" || !strings.Contains(r.stderr, dead) {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	cli(t, "", "check", "--addr", addr).want(t, exitUsage)
}

func TestDescribe(t *testing.T) {
	tests := map[string]struct{ challenge, msg, want string }{
		"revoked":  {`Bearer error="invalid_token", error_description="token revoked"`, "", "token revoked"},
		"no token": {`Bearer realm="revoked"`, "", "no token"},
		"message":  {"", "denied by policy", "denied by policy"},
		"nothing":  {"", "", "no reason given"},
	}
	for name, tc := range tests {
		if got := describe(tc.challenge, tc.msg); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

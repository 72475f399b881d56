package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

var checkCmd = &command{
	path:    "check",
	args:    "--addr ADDR TOKEN|- [flags]",
	summary: "ask a sidecar whether it allows a token, with the CheckRequest Envoy sends",
	help: `
Sends envoy.service.auth.v3.Authorization/Check to the sidecar's gRPC address, with the
request shaped as Envoy's ext_authz filter builds it and "authorization: Bearer TOKEN",
then prints the decision and its reason. Give - to read the token from standard input.
Exit status: 0 allowed, 1 denied, 3 the sidecar could not be asked.

Examples:
  revokectl check --addr 127.0.0.1:9191 eyJhbGciOiJSUzI1NiIs...
  revokectl check --addr unix:///run/revoked/grpc.sock - < token.txt`,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		addr := fs.String("addr", "127.0.0.1:9191", "the sidecar's gRPC `address` (host:port, or unix:///path); plaintext, as on a pod's loopback")
		timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer (a `DURATION`)")
		method := fs.String("method", "GET", "HTTP `METHOD` of the request checked")
		path := fs.String("path", "/", "`PATH` of the request checked")
		authority := fs.String("authority", "app.example.com", "`HOST` (:authority) of the request checked")
		return func(e *env, _ *conn, args []string) error {
			if len(args) != 1 {
				return usagef("want one token (or - for standard input), got %d arguments", len(args))
			}
			token, err := readSecret(e, args[0])
			if err != nil {
				return err
			}
			req := envoyreq.Bearer(token)
			req.Method, req.Path, req.Authority = *method, *path, *authority
			return check(e, *addr, *timeout, envoyreq.Check(req))
		}
	},
}

func check(e *env, addr string, timeout time.Duration, req *authv3.CheckRequest) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return exitError{exitNoCheck, fmt.Sprintf("%s: %v", addr, err)}
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return exitError{exitNoCheck, fmt.Sprintf("check at %s failed: %v", addr, err)}
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		fmt.Fprintln(e.stdout, "allow")
		for _, h := range resp.GetOkResponse().GetHeaders() {
			fmt.Fprintf(e.stdout, "  upstream header %s: %s\n", h.GetHeader().GetKey(), headerValue(h))
		}
		return nil
	}
	denied := resp.GetDeniedResponse()
	status := int(denied.GetStatus().GetCode())
	if status == 0 {
		status = http.StatusForbidden // Envoy's default for a denial without a status
	}
	challenge := findHeader(denied.GetHeaders(), "www-authenticate")
	reason := describe(challenge, resp.GetStatus().GetMessage())
	fmt.Fprintf(e.stdout, "deny: %d %s: %s\n", status, http.StatusText(status), reason)
	if challenge != "" {
		fmt.Fprintf(e.stdout, "  www-authenticate: %s\n", challenge)
	}
	return exitError{code: exitFailed}
}

var descRE = regexp.MustCompile(`error_description="([^"]*)"`)

// describe returns the denial's reason: the challenge's error_description (CONTRACT
// section 3), else the gRPC status message.
func describe(challenge, msg string) string {
	if m := descRE.FindStringSubmatch(challenge); m != nil {
		return m[1]
	}
	if !strings.Contains(challenge, "error=") && strings.HasPrefix(challenge, "Bearer") {
		return "no token"
	}
	if msg != "" {
		return msg
	}
	return "no reason given"
}

func findHeader(hs []*corev3.HeaderValueOption, key string) string {
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), key) {
			return headerValue(h)
		}
	}
	return ""
}

func headerValue(h *corev3.HeaderValueOption) string {
	if v := h.GetHeader().GetValue(); v != "" {
		return v
	}
	return string(h.GetHeader().GetRawValue())
}

// Package envoyreq builds ext_authz CheckRequests shaped as Envoy sends them, for
// revokectl check, the load tool and the tests: lowercase header keys, the pseudo
// headers, the source and destination addresses, a request id.
package envoyreq

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Request is what the client sent to Envoy.
type Request struct {
	Method    string            // default GET
	Authority string            // default app.example.com
	Path      string            // default /
	Headers   map[string]string // any case; lowercased as Envoy does
	Source    string            // client IP; default 10.0.0.1
}

// Bearer is a Request carrying "authorization: Bearer token".
func Bearer(token string) Request {
	return Request{Headers: map[string]string{"authorization": "Bearer " + token}}
}

// Check returns the CheckRequest Envoy's ext_authz filter would send for r.
func Check(r Request) *authv3.CheckRequest {
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Authority == "" {
		r.Authority = "app.example.com"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Source == "" {
		r.Source = "10.0.0.1"
	}
	id := requestID()
	headers := map[string]string{
		":authority":        r.Authority,
		":method":           r.Method,
		":path":             r.Path,
		":scheme":           "http",
		"user-agent":        "curl/8.5.0",
		"accept":            "*/*",
		"x-forwarded-proto": "http",
		"x-request-id":      id,
	}
	for k, v := range r.Headers {
		headers[strings.ToLower(k)] = v
	}
	_, query, _ := strings.Cut(r.Path, "?")
	return &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: socket(r.Source, 51234)},
			Destination: &authv3.AttributeContext_Peer{Address: socket("127.0.0.1", 8000)},
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(time.Now()),
				Http: &authv3.AttributeContext_HttpRequest{
					Id:       id,
					Method:   r.Method,
					Headers:  headers,
					Path:     r.Path,
					Host:     r.Authority,
					Scheme:   "http",
					Query:    query,
					Protocol: "HTTP/1.1",
					Size:     0,
				},
			},
			MetadataContext: &corev3.Metadata{},
		},
	}
}

func socket(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// requestID mimics Envoy's x-request-id, a random UUID.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

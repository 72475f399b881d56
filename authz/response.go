package authz

import (
	"strconv"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// What a decision looks like to Envoy, whatever the transport. The gRPC and HTTP
// servers only translate these into their own types: a header added here reaches both.

// Header is one response header, its name lowercase as Envoy spells them.
type Header struct{ Name, Value string }

// Denial is the response Envoy sends the client for a refused request.
type Denial struct {
	Status  int
	Headers []Header
	Body    []byte
}

// DenialFor renders reason r. It depends on r alone, so servers build each once.
func DenialFor(r Reason) Denial {
	d := Denial{Status: r.HTTPStatus(), Body: denialBody(r)}
	d.Headers = append(d.Headers, Header{"content-type", "application/json"}, Header{"cache-control", "no-store"})
	if w := r.WWWAuthenticate(); w != "" {
		d.Headers = append(d.Headers, Header{"www-authenticate", w})
	}
	if r.HTTPStatus() == 503 {
		// Honoured by clients of the gRPC mode; Envoy's HTTP mode forwards only the
		// headers its allowed_client_headers names (see the README's HTTP mode notes).
		d.Headers = append(d.Headers, Header{"retry-after", "1"})
	}
	return d
}

// Upstream is what an allowed request carries to the app: headers set (overwriting
// any the client sent) and headers removed.
type Upstream struct {
	Set    []Header
	Remove []string
}

// upstreamFor renders the allow of token t with the subject sent in subjectHeader
// (none when empty). A token without sub still removes a client's header of that
// name: only the sidecar may speak for the subject.
func upstreamFor(t *Token, subjectHeader string) Upstream {
	switch {
	case subjectHeader == "":
		return Upstream{}
	case t.Subject == "":
		return Upstream{Remove: []string{subjectHeader}}
	}
	return Upstream{Set: []Header{{subjectHeader, t.Subject}}}
}

// denialBody is the JSON body of a denial, RFC 6750 style.
func denialBody(r Reason) []byte {
	switch {
	case r.HTTPStatus() == 503:
		return []byte(`{"error":"temporarily_unavailable","error_description":"` + r.Description() + `"}`)
	case r.Description() == "":
		return []byte(`{"error":"unauthorized","error_description":"bearer token required"}`)
	}
	return []byte(`{"error":"invalid_token","error_description":` + strconv.Quote(r.Description()) + `}`)
}

// rendered keeps a cached token's allow response as a transport built it, so a token
// checked many times builds its response once. Responses are only ever read.
type rendered struct {
	grpc atomic.Pointer[authv3.CheckResponse]
}

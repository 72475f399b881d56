package authz

import (
	"net/http"
	"strconv"
)

// HTTPServer is Envoy's HTTP ext_authz mode: Envoy forwards the request's method, path
// and allowed headers (authorization among them by default). Envoy allows on a 200
// only, and then sends the headers its allowed_upstream_headers names to the app; any
// other answer goes to the client with the headers allowed_client_headers names.
type HTTPServer struct {
	a             *Authorizer
	subjectHeader string // canonical (net/http) form, computed once
	denials       [numReasons]httpDenial
}

// httpDenial is a Denial in net/http's form, built once per reason.
type httpDenial struct {
	status int
	header http.Header
	body   []byte
}

// NewHTTPServer returns the HTTP ext_authz handler.
func NewHTTPServer(a *Authorizer, subjectHeader string) *HTTPServer {
	s := &HTTPServer{a: a}
	if subjectHeader != "" {
		s.subjectHeader = http.CanonicalHeaderKey(subjectHeader)
	}
	for _, r := range Reasons() {
		d := DenialFor(r)
		h := http.Header{"Content-Length": {strconv.Itoa(len(d.Body))}}
		for _, kv := range d.Headers {
			h[http.CanonicalHeaderKey(kv.Name)] = []string{kv.Value}
		}
		s.denials[r] = httpDenial{status: d.Status, header: h, body: d.Body}
	}
	return s
}

// ServeHTTP answers one check, whatever the method and path.
func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var header string
	values := req.Header["Authorization"]
	if len(values) == 1 {
		header = values[0]
	}
	d := s.a.CheckHeaders(header, len(values)) // two or more: refused, whatever they hold
	h := w.Header()
	if d.Allowed() {
		h["Cache-Control"] = noStore
		// Envoy's HTTP mode can only add headers upstream: a removal is sent as an
		// empty value, which allowed_upstream_headers then overwrites the client's with.
		// The names are s.subjectHeader's, already canonical.
		up := upstreamFor(d.Token, s.subjectHeader)
		for _, kv := range up.Set {
			h[kv.Name] = []string{kv.Value}
		}
		for _, name := range up.Remove {
			h[name] = []string{""}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	den := &s.denials[d.Reason]
	for k, v := range den.header {
		h[k] = v
	}
	w.WriteHeader(den.status)
	_, _ = w.Write(den.body)
}

var noStore = []string{"no-store"}

package authz

import (
	"net/http"
	"strconv"
)

// HTTPServer is Envoy's HTTP ext_authz mode: Envoy forwards the request's method, path
// and allowed headers (authorization among them by default); any 2xx allows and the
// headers listed in allowed_upstream_headers go to the app; any other answer is sent
// to the client as it is.
type HTTPServer struct {
	a             *Authorizer
	subjectHeader string
	bodies        [numReasons][]byte
	lengths       [numReasons][]string
}

// NewHTTPServer returns the HTTP ext_authz handler.
func NewHTTPServer(a *Authorizer, subjectHeader string) *HTTPServer {
	s := &HTTPServer{a: a, subjectHeader: http.CanonicalHeaderKey(subjectHeader)}
	for _, r := range Reasons() {
		s.bodies[r] = denialBody(r)
		s.lengths[r] = []string{strconv.Itoa(len(s.bodies[r]))}
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
	h["Cache-Control"] = noStore
	if d.Allowed() {
		if s.subjectHeader != "" {
			h[s.subjectHeader] = []string{d.Token.Subject}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if c := d.Reason.WWWAuthenticate(); c != "" {
		h["Www-Authenticate"] = []string{c}
	}
	if d.Reason.HTTPStatus() == http.StatusServiceUnavailable {
		h["Retry-After"] = retryAfter
	}
	h["Content-Type"] = jsonType
	h["Content-Length"] = s.lengths[d.Reason]
	w.WriteHeader(d.Reason.HTTPStatus())
	_, _ = w.Write(s.bodies[d.Reason])
}

var (
	noStore    = []string{"no-store"}
	retryAfter = []string{"1"}
	jsonType   = []string{"application/json"}
)

package ssf

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/revoked-dev/revoked/publish"
)

// pushError is the RFC 8935 section 2.3 error body.
type pushError struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

func writePushError(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(pushError{Err: errCode, Description: desc})
}

// PushHandler is POST /ssf/events, push delivery (RFC 8935). The Authorization header
// must be a transmitter's push authorization (compared in constant time): none or an
// unknown one is 401; a SET from another transmitter than the one it authenticates is
// 403. The body is one SET, Content-Type application/secevent+jwt, at most MaxSETSize.
// 202 only once the stream acknowledged its revocations (or it needs none); 400 with
// {"err", "description"} for a SET refused; for a revocation the stream did not take,
// publish.FailureOf's answer, the ingest API's: 503 when a retry may succeed (the
// transmitter retries, and the retry is never doubled), 413 or 500 when it cannot.
func (r *Receiver) PushHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writePushError(w, http.StatusMethodNotAllowed, CodeInvalidRequest, "use POST")
			return
		}
		t := r.authenticate(req.Header.Get("Authorization"))
		if t == nil {
			r.count(nil, "none", CodeAuthenticationFailed)
			writePushError(w, http.StatusUnauthorized, CodeAuthenticationFailed, "the Authorization header is not a transmitter's push authorization")
			return
		}
		if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || !strings.EqualFold(mt, "application/secevent+jwt") {
			r.count(t, "none", CodeInvalidRequest)
			writePushError(w, http.StatusBadRequest, CodeInvalidRequest, "Content-Type must be application/secevent+jwt")
			return
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, MaxSETSize+1))
		if err != nil {
			r.count(t, "none", CodeInvalidRequest)
			writePushError(w, http.StatusBadRequest, CodeInvalidRequest, "cannot read the body")
			return
		}
		if len(body) > MaxSETSize {
			r.count(t, "none", CodeInvalidRequest)
			writePushError(w, http.StatusBadRequest, CodeInvalidRequest, "the SET is larger than 64 KiB")
			return
		}
		raw := strings.TrimSpace(string(body))
		iss, err := unverifiedIssuer(raw)
		if err == nil && iss != t.cfg.Issuer {
			if _, known := r.byIssuer[iss]; known {
				r.count(t, "none", CodeAccessDenied)
				writePushError(w, http.StatusForbidden, CodeAccessDenied, "the push authorization is not the SET issuer's")
				return
			}
			err = setErr(CodeInvalidIssuer, "the SET's iss is not a configured transmitter")
		}
		if err == nil {
			_, err = r.receive(req.Context(), t, raw)
		} else {
			err = r.refused(t, "none", "", err)
		}
		var se *SETError
		switch {
		case err == nil:
			w.WriteHeader(http.StatusAccepted)
		case errors.As(err, &se):
			writePushError(w, http.StatusBadRequest, se.Code, se.Description)
		default:
			f := publish.FailureOf(err)
			if f.Retry() {
				w.Header().Set("Retry-After", "1")
			}
			writePushError(w, f.Status, f.Code, f.Description)
		}
	})
}

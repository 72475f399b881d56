package publish

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
)

// Failure is how an HTTP endpoint answers a publish that got no ack: the ingest API's
// endpoints and the Shared Signals push receiver use this one mapping.
type Failure struct {
	Status      int    // 503, 413 or 500
	Code        string // temporarily_unavailable, too_large, server_error
	Description string
}

// Retry reports whether sending the request again may succeed (the answer carries
// Retry-After); a retry is never doubled.
func (f Failure) Retry() bool { return f.Status == http.StatusServiceUnavailable }

// FailureOf maps a Publish error to its answer. 503 when a retry may succeed: no ack,
// or a refusal the stream itself marks temporary (full, no leader). A refusal a retry
// cannot change is not 503, so that no caller retries it for ever: 413 for an event
// larger than the stream takes (the request's fault), 500 for the rest (the set-up's:
// another stream on the subject).
func FailureOf(err error) Failure {
	var api *jetstream.APIError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &api) || api.Code == http.StatusServiceUnavailable {
		return Failure{http.StatusServiceUnavailable, "temporarily_unavailable",
			"the revocation was not acknowledged by the stream; retry (a retry is never doubled)"}
	}
	if api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return Failure{http.StatusRequestEntityTooLarge, "too_large",
			"the stream refuses an event this large (its max_msg_size): sending it again cannot succeed"}
	}
	return Failure{http.StatusInternalServerError, "server_error",
		fmt.Sprintf("the stream refused the revocation (%s): retrying cannot succeed until the operator fixes the set-up", api.Description)}
}

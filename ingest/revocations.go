package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/publish"
)

// itemError is why one event of a request was rejected.
type itemError struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"` // event.Reason's label: malformed, unknown_type, invalid, too_large
	Error  string `json:"error"`
}

// sourceAPI is the source of the events a caller of /v1/revocations gives none.
const sourceAPI = "api"

// errNoEvents is an empty array.
var errNoEvents = errors.New("no events: send one event object or a non-empty array of them")

// parseEvents reads a request body: one contract event, or a JSON array of them. A body
// that is not JSON, or neither an object nor an array, is an error; an array whose
// elements are bad gives one itemError each (and no event is to be published). Each
// event is checked as p will check it before sending; one without a source gets "api".
func parseEvents(body []byte, p *publish.Publisher) ([]event.Event, []itemError, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil, errors.New("empty body")
	}
	var raws []json.RawMessage
	switch body[0] {
	case '{':
		var probe any
		if err := json.Unmarshal(body, &probe); err != nil {
			return nil, nil, fmt.Errorf("malformed JSON: %w", err)
		}
		raws = []json.RawMessage{body}
	case '[':
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, nil, fmt.Errorf("malformed JSON array: %w", err)
		}
		if len(raws) == 0 {
			return nil, nil, errNoEvents
		}
	default:
		return nil, nil, errors.New("the body must be a JSON event object or an array of them")
	}
	evs := make([]event.Event, 0, len(raws))
	var bad []itemError
	for i, raw := range raws {
		ev, err := event.Decode(raw, p.AllowedClaims())
		if err == nil && ev.Source == "" {
			ev.Source = sourceAPI
		}
		if err == nil {
			_, err = p.Payload(&ev)
		}
		if err != nil {
			bad = append(bad, itemError{Index: i, Reason: event.Reason(err), Error: err.Error()})
			continue
		}
		evs = append(evs, ev)
	}
	return evs, bad, nil
}

// itemResult is the answer for one published event.
type itemResult struct {
	Index     int    `json:"index"`
	Sequence  uint64 `json:"seq,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	MsgID     string `json:"msg_id"`
	Error     string `json:"error,omitempty"`
}

// revocations is POST /v1/revocations.
func (s *Server) revocations(w http.ResponseWriter, r *http.Request) {
	const endpoint = "revocations"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "send application/json")
			return
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return
	}
	evs, bad, err := parseEvents(body, s.pub)
	if err != nil {
		s.metrics.rejected.WithLabelValues(endpoint, "malformed").Inc()
		writeError(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if len(bad) > 0 {
		for _, b := range bad {
			s.metrics.rejected.WithLabelValues(endpoint, b.Reason).Inc()
		}
		writeJSON(w, http.StatusBadRequest, struct {
			apiError
			Errors []itemError `json:"errors"`
		}{apiError{"invalid_event", fmt.Sprintf("%d of %d events rejected; nothing was published", len(bad), len(bad)+len(evs))}, bad})
		return
	}
	results, failed := s.publishAll(r, evs)
	for _, res := range results {
		if res.Error == "" {
			s.countPublished(endpoint, publish.Result{Duplicate: res.Duplicate})
		}
	}
	if failed != nil {
		code, apiErr := s.publishFailure(w, endpoint, "an event", failed, "events", len(evs))
		if code == http.StatusServiceUnavailable {
			apiErr.Description = "not every event was acknowledged by the stream; send the same request again (nothing is doubled)"
		}
		writeJSON(w, code, struct {
			apiError
			Results []itemResult `json:"results"`
		}{apiErr, results})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Results []itemResult `json:"results"`
	}{results})
}

// publishAll publishes evs, in order, and waits for every ack: one event directly,
// several through a pipeline. It returns the first failure.
func (s *Server) publishAll(r *http.Request, evs []event.Event) ([]itemResult, error) {
	results := make([]itemResult, len(evs))
	if len(evs) == 1 {
		res, err := s.pub.Publish(r.Context(), evs[0])
		results[0] = toItem(0, res, err)
		return results, err
	}
	var mu sync.Mutex
	var first error
	pl := s.pub.NewPipeline(r.Context(), 256, func(i int, res publish.Result, err error) {
		mu.Lock()
		defer mu.Unlock()
		results[i] = toItem(i, res, err)
		if err != nil && first == nil {
			first = err
		}
	})
	for i, ev := range evs {
		if err := pl.Publish(i, ev); err != nil {
			results[i] = toItem(i, publish.Result{}, err)
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	}
	pl.Close()
	return results, first
}

func toItem(i int, res publish.Result, err error) itemResult {
	it := itemResult{Index: i, Sequence: res.Sequence, Duplicate: res.Duplicate, MsgID: res.MsgID}
	if err != nil {
		it = itemResult{Index: i, MsgID: res.MsgID, Error: "not published: " + err.Error()}
	}
	return it
}

func (s *Server) countPublished(endpoint string, r publish.Result) {
	if r.Duplicate {
		s.metrics.duplicates.WithLabelValues(endpoint).Inc()
		return
	}
	s.metrics.published.WithLabelValues(endpoint).Inc()
}

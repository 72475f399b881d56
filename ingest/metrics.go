package ingest

import (
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ingest API's Prometheus metrics.
type metrics struct {
	requests      *prometheus.CounterVec   // revoked_ingest_requests_total{endpoint,code}
	duration      *prometheus.HistogramVec // revoked_ingest_request_duration_seconds{endpoint}
	published     *prometheus.CounterVec   // revoked_ingest_events_published_total{endpoint}
	duplicates    *prometheus.CounterVec   // revoked_ingest_events_duplicate_total{endpoint}
	publishErrors *prometheus.CounterVec   // revoked_ingest_publish_errors_total{endpoint}
	rejected      *prometheus.CounterVec   // revoked_ingest_events_rejected_total{endpoint,reason}
	ignored       *prometheus.CounterVec   // revoked_ingest_tokens_ignored_total{endpoint,reason}
}

func newMetrics(reg prometheus.Registerer, nc *nats.Conn) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_requests_total",
			Help: "Requests to the ingest API, by endpoint and HTTP status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "revoked_ingest_request_duration_seconds",
			Help:    "Time to answer an ingest request, the stream's ack included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_events_published_total",
			Help: "Events the stream acknowledged as new.",
		}, []string{"endpoint"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_events_duplicate_total",
			Help: "Events the stream already held (same Nats-Msg-Id within the duplicate window).",
		}, []string{"endpoint"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_publish_errors_total",
			Help: "Requests answered 503 because the stream did not acknowledge their events.",
		}, []string{"endpoint"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_events_rejected_total",
			Help: "Events, logout tokens and revocation requests refused, by reason (invalid, replayed, unknown_key, no_sub, not_token_owner, ...).",
		}, []string{"endpoint", "reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ingest_tokens_ignored_total",
			Help: "Tokens sent to /oauth2/revoke answered 200 without a revocation (RFC 7009): expired, invalid, wrong issuer or audience.",
		}, []string{"endpoint", "reason"}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "revoked_ingest_nats_connected",
		Help: "1 while the NATS connection is up.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.published, m.duplicates, m.publishErrors, m.rejected, m.ignored, connected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

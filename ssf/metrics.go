package ssf

import "github.com/prometheus/client_golang/prometheus"

// metrics are the receiver's Prometheus metrics, labelled by the transmitter's issuer
// (from the file: never a value a sender chooses).
type metrics struct {
	sets       *prometheus.CounterVec // revoked_ssf_sets_received_total{transmitter,event_type,result}
	published  *prometheus.CounterVec // revoked_ssf_events_published_total{transmitter,result}
	verified   *prometheus.GaugeVec   // revoked_ssf_stream_verified_timestamp_seconds{transmitter}
	status     *prometheus.GaugeVec   // revoked_ssf_stream_status{transmitter,status}
	pollErrors *prometheus.CounterVec // revoked_ssf_poll_errors_total{transmitter}
	lastPoll   *prometheus.GaugeVec   // revoked_ssf_poll_last_success_timestamp_seconds{transmitter}
	// revoked_ssf_oauth_token_requests_total{transmitter,result}
	oauthTokens *prometheus.CounterVec
}

// Stream statuses of SSF 1.0 section 8.1.2.
var streamStatuses = []string{"enabled", "paused", "disabled"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ssf_sets_received_total",
			Help: "SETs received, pushed or polled, by transmitter, event type and result (published, duplicate, replayed, dry_run, ignored, recorded, unknown_event, unavailable, refused_by_stream, or the RFC 8935 error code).",
		}, []string{"transmitter", "event_type", "result"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ssf_events_published_total",
			Help: "Revocation events from SETs: published (new to the stream), duplicate (the stream held it), dry_run (logged, not published).",
		}, []string{"transmitter", "result"}),
		verified: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "revoked_ssf_stream_verified_timestamp_seconds",
			Help: "When the transmitter's stream last delivered a verification event (unix seconds); 0: never.",
		}, []string{"transmitter"}),
		status: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "revoked_ssf_stream_status",
			Help: "1 for the stream's status as the transmitter last said (stream-updated, or the status endpoint): enabled, paused or disabled. While paused or disabled no revocation arrives from it.",
		}, []string{"transmitter", "status"}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ssf_poll_errors_total",
			Help: "Polls (RFC 8936) that failed: the transmitter unreachable or answering an error.",
		}, []string{"transmitter"}),
		lastPoll: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "revoked_ssf_poll_last_success_timestamp_seconds",
			Help: "When a poll of the transmitter last succeeded (unix seconds).",
		}, []string{"transmitter"}),
		oauthTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "revoked_ssf_oauth_token_requests_total",
			Help: "Access token requests to a transmitter's OAuth token endpoint (client_credentials): issued, refused (the server refused the client: its id, secret or scopes) or failed (unreachable, or a server error).",
		}, []string{"transmitter", "result"}),
	}
	for _, c := range []prometheus.Collector{m.sets, m.published, m.verified, m.status, m.pollErrors, m.lastPoll, m.oauthTokens} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) setStatus(transmitter, status string) {
	for _, s := range streamStatuses {
		v := 0.0
		if s == status {
			v = 1
		}
		m.status.WithLabelValues(transmitter, s).Set(v)
	}
}

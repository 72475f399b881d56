package authz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the check metrics of CONTRACT section 3.
type Metrics struct {
	checks   [numReasons]prometheus.Counter // resolved once: no label lookup per request
	duration prometheus.Histogram
}

// NewMetrics registers the check metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{}
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "revoked_checks_total",
		Help: "Checks answered, by decision and reason.",
	}, []string{"decision", "reason"})
	m.duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "revoked_check_duration_seconds",
		Help: "Time to decide a check, from the request's authorization header to the decision.",
		// 2.5 µs to about 10 ms: decisions take microseconds; the budget is 1 ms.
		Buckets:                        prometheus.ExponentialBuckets(2.5e-6, 2.5, 10),
		NativeHistogramBucketFactor:    1.1,
		NativeHistogramMaxBucketNumber: 100,
	})
	for _, r := range Reasons() {
		decision := "deny"
		if r == ReasonOK {
			decision = "allow"
		}
		m.checks[r] = checks.WithLabelValues(decision, r.String())
	}
	reg.MustRegister(checks, m.duration)
	return m
}

func (m *Metrics) observe(r Reason, d time.Duration) {
	m.checks[r].Inc()
	m.duration.Observe(d.Seconds())
}

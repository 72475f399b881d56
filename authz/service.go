package authz

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// Config is everything a decision depends on, set once by the wiring.
type Config struct {
	Verify VerifierConfig // the token checks: issuers, audiences, leeway, lifetime, claims

	// TokenCacheSize is how many verified tokens are kept; 0 verifies every request.
	TokenCacheSize int
	// SubjectHeader carries an allowed token's sub to the app ("" sends none).
	SubjectHeader string

	Registerer prometheus.Registerer // the check metrics go here; nil registers none
	Log        *slog.Logger          // nil discards
}

// Service is the decision and the two ext_authz servers that render it: what a
// composition root needs from this package, built by one call.
type Service struct {
	*Authorizer
	GRPC *GRPCServer // envoy.service.auth.v3.Authorization; register it on a server built with GRPCServerOptions
	HTTP *HTTPServer // Envoy's HTTP ext_authz mode
}

// New builds the decision over keys and the replica's set. It starts closed
// (ReasonNotReady) until the caller opens the gate with SetGate.
func New(keys *jwtkeys.Keys, set *blocklist.Set, cfg Config) *Service {
	var m *Metrics
	if cfg.Registerer != nil {
		m = NewMetrics(cfg.Registerer)
	}
	a := NewAuthorizer(NewVerifier(keys, cfg.Verify), set, Options{
		CacheSize: cfg.TokenCacheSize,
		Metrics:   m,
		Log:       cfg.Log,
	})
	return &Service{
		Authorizer: a,
		GRPC:       NewGRPCServer(a, cfg.SubjectHeader),
		HTTP:       NewHTTPServer(a, cfg.SubjectHeader),
	}
}

package ingest

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/revoked-dev/revoked/ssf"
)

// startSSF loads the --ssf-transmitters file and starts the Shared Signals receiver:
// its keys, its poll workers and stream management (they end with ctx).
func (s *Server) startSSF(ctx context.Context, reg prometheus.Registerer) error {
	if s.cfg.SSFTransmitters == "" {
		return nil
	}
	cfg, err := ssf.LoadConfig(s.cfg.SSFTransmitters)
	if err != nil {
		return err
	}
	rx, err := ssf.New(ctx, cfg, s.pub, ssf.Options{MaxTokenLifetime: s.cfg.MaxTokenLife, Log: s.log, Registerer: reg})
	if err != nil {
		return err
	}
	rx.Start(ctx)
	s.ssf = rx
	s.log.Info("ssf receiver started", "transmitters", len(cfg.Transmitters))
	return nil
}

// ssfEvents is POST /ssf/events: SSF push delivery (RFC 8935).
func (s *Server) ssfEvents(w http.ResponseWriter, r *http.Request) {
	if s.ssf == nil {
		writeError(w, http.StatusNotFound, "not_found", "/ssf/events is off: start revoked ingest with --ssf-transmitters")
		return
	}
	s.ssf.PushHandler().ServeHTTP(w, r)
}

package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const usageHead = `Usage: revoked ingest [flags]

Serves the ingest API, for identity providers that cannot publish to NATS:
  POST /v1/revocations     one contract event, or a JSON array of them
  POST /oauth2/revoke      RFC 7009 token revocation (form: token, token_type_hint)
  POST /backchannel-logout OpenID Connect Back-Channel Logout 1.0 (form: logout_token)
and /healthz, /readyz, /metrics on --admin-addr. Each request is answered once the stream
has acknowledged its events; 503 means it was not, and a retry is never doubled.

Callers authenticate with the bearer token (--bearer-token-file) or a client certificate
(--client-ca); /oauth2/revoke with --oauth-client credentials when set; the IdP's signed
logout token authenticates /backchannel-logout.

Every flag can also be set as REVOKED_<FLAG> (--nats-url is REVOKED_NATS_URL).

Flags:
`

// Main runs `revoked ingest` with args (after the subcommand) until ctx ends, and
// returns the exit status: 0 after a clean shutdown, 1 when it cannot start, 2 for a
// bad command line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, fs, err := Parse("revoked ingest", args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, usageHead)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "revoked ingest: %v\nRun 'revoked ingest --help' for the flags.\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintf(stderr, "revoked ingest: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := Start(ctx, cfg, log, reg)
	if err != nil {
		log.Error("revoked ingest cannot start", "err", err)
		return 1
	}
	<-ctx.Done()
	log.Info("revoked ingest stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return 0
}

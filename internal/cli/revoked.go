// Package cli holds the wiring of the revoked command: parse flags, set up logging,
// start the sidecar, and stop it gracefully on SIGTERM.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/revoked-dev/revoked/config"
	"github.com/revoked-dev/revoked/internal/sidecar"
)

// Main runs the revoked command with args and returns the exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(args) > 0 && args[0] == "ingest" {
		return ingestMain(ctx, args[1:])
	}
	cfg, err := config.Parse("revoked", args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "revoked:", err)
		return 2
	}
	log := NewLogger(os.Stderr, cfg.LogLevel)
	s, err := sidecar.Start(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if cfg.Dev {
		s.PrintDevBanner(os.Stdout)
	}
	<-ctx.Done()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Warn("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// NewLogger returns a JSON slog logger at level (debug, info, warn, error).
func NewLogger(w *os.File, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

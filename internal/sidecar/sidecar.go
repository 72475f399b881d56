// Package sidecar is the composition root of `revoked`, the sidecar: its settings and
// flags (Settings, ParseSettings), the command's run until SIGTERM (Run), and the
// wiring (Start): the blocklist, the NATS replica that feeds it, the ext_authz servers
// that read it, health and metrics. cmd/revoked and the end-to-end tests start it the
// same way.
package sidecar

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/revoked-dev/revoked/authz"
	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/buildinfo"
	"github.com/revoked-dev/revoked/jwtkeys"
	revsync "github.com/revoked-dev/revoked/sync"
)

// authzService is the gRPC health service name Envoy's health checks may ask for.
const authzService = "envoy.service.auth.v3.Authorization"

// Sidecar is a running revoked sidecar.
type Sidecar struct {
	cfg        Settings // as resolved at Start (--dev fills in NATS and keys)
	log        *slog.Logger
	Registry   *prometheus.Registry
	Set        *blocklist.Set
	Replica    *revsync.Replica
	Authorizer *authz.Authorizer
	keys       *jwtkeys.Keys
	nc         *nats.Conn
	dev        *devEnv

	authzSvc   *authz.Service // the decision and the ext_authz servers, built by one authz.New
	grpcServer *grpc.Server
	health     *health.Server
	httpServer *http.Server
	adminSrv   *http.Server
	grpcAddr   string
	httpAddr   string
	adminAddr  string

	stopping atomic.Bool
	cancel   context.CancelFunc
	done     chan struct{} // closed when the background loops have ended; nil before they start
}

// Start builds and starts a sidecar. It returns once the listeners are open; the
// replica syncs in the background and the sidecar denies every check (and reports not
// ready) until it has caught up and the signing keys are loaded. It works on its own
// copy of cfg: what --dev fills in stays inside the sidecar.
func Start(ctx context.Context, cfg Settings, log *slog.Logger) (s *Sidecar, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	s = &Sidecar{cfg: cfg, log: log, cancel: cancel, Registry: prometheus.NewRegistry()}
	built := s // the error returns below set s to nil
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	if cfg.Dev {
		if s.dev, err = startDev(ctx, cfg, log); err != nil {
			return nil, err
		}
		cfg = s.dev.settings(cfg)
		s.cfg = cfg
	}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())

	var secret []byte
	if cfg.HMACSecretFile != "" {
		if secret, err = os.ReadFile(cfg.HMACSecretFile); err != nil {
			return nil, fmt.Errorf("hmac secret: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(secret)))
	}
	s.keys, err = jwtkeys.New(ctx, jwtkeys.Config{File: cfg.JWKSFile, URL: cfg.JWKSURL, Refresh: cfg.JWKSRefresh, HMACSecret: secret}, log)
	if err != nil {
		return nil, err
	}

	s.Set = blocklist.New()
	natsOpts := cfg.NATS
	natsOpts.Name = "revoked-sidecar"
	if s.nc, err = natsOpts.Connect(log); err != nil {
		return nil, err
	}
	var snapshotKeys []ed25519.PublicKey
	if cfg.SnapshotPublicKey != "" {
		if snapshotKeys, err = readSnapshotKeys(cfg.SnapshotPublicKey); err != nil {
			return nil, err
		}
		if len(snapshotKeys) == 0 {
			log.Warn("snapshot public key file missing or empty: no snapshot will be trusted, every start replays the whole stream (copy the key ConfigMap of the revoked release into this namespace; see the chart's NOTES)",
				"snapshot_public_key", cfg.SnapshotPublicKey, "snapshot_bucket", cfg.SnapshotBucket)
		}
	}
	s.Replica, err = revsync.New(s.nc, s.Set, revsync.Options{
		Stream:             cfg.Stream,
		SubjectPrefix:      cfg.SubjectPrefix,
		SnapshotBucket:     cfg.SnapshotBucket,
		SnapshotPublicKeys: snapshotKeys,
		CutoffClaims:       cfg.CutoffClaims,
		MaxTokenLifetime:   cfg.MaxTokenLife,
		Leeway:             cfg.Leeway,
		MaxEntries:         cfg.MaxEntries,
		Registerer:         s.Registry,
		Log:                log,
	})
	if err != nil {
		return nil, err
	}

	s.authzSvc = authz.New(s.keys, s.Set, authz.Config{
		Verify: authz.VerifierConfig{
			Issuers:      cfg.Issuers,
			Audiences:    cfg.Audiences,
			Leeway:       cfg.Leeway,
			RequireJTI:   cfg.RequireJTI,
			MaxLifetime:  cfg.MaxTokenLife,
			CutoffClaims: cfg.CutoffClaims,
		},
		TokenCacheSize: cfg.TokenCacheSize,
		SubjectHeader:  cfg.SubjectHeader,
		Registerer:     s.Registry,
		Log:            log,
	})
	s.Authorizer = s.authzSvc.Authorizer

	if err = s.listen(); err != nil {
		return nil, err
	}

	s.done = make(chan struct{})
	limitGoMemoryBeside(ctx, s.Set.SlotBytes)
	loops := make(chan struct{}, 2)
	go func() {
		defer func() { loops <- struct{}{} }()
		if err := s.Replica.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("replica stopped", "err", err)
		}
	}()
	go func() {
		defer func() { loops <- struct{}{} }()
		s.gateLoop(ctx)
	}()
	go func() { <-loops; <-loops; close(s.done) }()
	log.Info("revoked started", "grpc", s.grpcAddr, "http", s.httpAddr, "admin", s.adminAddr,
		"stream", cfg.Stream, "nats", redactURL(cfg.NATS.URL))
	return s, nil
}

func (s *Sidecar) listen() error {
	ka := keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
	// GRPCServerOptions decodes only the authorization header of a CheckRequest.
	opts := append([]grpc.ServerOption{grpc.KeepaliveParams(ka), grpc.MaxRecvMsgSize(4 << 20)}, authz.GRPCServerOptions()...)
	s.grpcServer = grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(s.grpcServer, s.authzSvc.GRPC)
	s.health = health.NewServer()
	for _, svc := range []string{"", authzService} {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(s.grpcServer, s.health)
	lis, err := listen(s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	s.grpcAddr = addrString(lis)
	go func() { _ = s.grpcServer.Serve(lis) }()

	if s.cfg.HTTPAddr != "" {
		lis, err := listen(s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("--http-addr: %w", err)
		}
		s.httpAddr = addrString(lis)
		s.httpServer = &http.Server{
			Handler:           s.authzSvc.HTTP,
			ReadHeaderTimeout: 5 * time.Second,
			MaxHeaderBytes:    64 << 10,
			IdleTimeout:       2 * time.Minute,
		}
		go func() { _ = s.httpServer.Serve(lis) }()
	}

	if s.cfg.AdminAddr != "" {
		lis, err := listen(s.cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("--admin-addr: %w", err)
		}
		s.adminAddr = addrString(lis)
		s.adminSrv = &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = s.adminSrv.Serve(lis) }()
	}
	return nil
}

// readSnapshotKeys reads the public keys of --snapshot-public-key. A file that is missing
// or empty gives no key and no error: the sidecar trusts no snapshot and replays the whole
// stream (the replica counts it as no_key). An application's pod mounts the key from an
// optional ConfigMap, which its namespace may not hold yet; a snapshot only makes a start
// faster, and starting without one loses nothing. A file that holds something else than
// keys is still refused: that is a mistake to fix, not a key not yet published.
func readSnapshotKeys(path string) ([]ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--snapshot-public-key: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	keys, err := revsync.ParseSnapshotPublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("--snapshot-public-key %s: %w", path, err)
	}
	return keys, nil
}

// listen opens a TCP address or, for unix:///path, a Unix socket (Envoy's pipe address).
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		// Envoy in the same pod may run as another user of the socket's group (the
		// pod's fsGroup); nobody else gets in.
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	return net.Listen("tcp", addr)
}

func addrString(l net.Listener) string {
	if l.Addr().Network() == "unix" {
		return "unix://" + l.Addr().String()
	}
	return l.Addr().String()
}

func (s *Sidecar) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := s.status(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("GET /debug/replica", func(w http.ResponseWriter, _ *http.Request) {
		jti, cutoff := s.Set.Len()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ready":             s.Replica.Ready(),
			"connected":         s.Replica.Connected(),
			"last_sequence":     s.Replica.LastSequence(),
			"jti_entries":       jti,
			"cutoff_entries":    cutoff,
			"staleness_seconds": s.Replica.Staleness(time.Now()).Seconds(),
			"gate":              s.Authorizer.Gate().String(),
		})
	})
	if s.dev != nil {
		mux.HandleFunc("GET /dev/token", s.dev.tokenHandler)
	}
	return mux
}

// status names what keeps the sidecar from serving; empty when it serves.
func (s *Sidecar) status() string {
	switch {
	case s.stopping.Load():
		return "shutting down"
	case !s.Replica.Ready():
		return s.Replica.NotReadyReason()
	case !s.keys.Loaded(context.Background()):
		return "signing keys not loaded"
	case s.Authorizer.Gate() == authz.ReasonStale:
		return "replica stale"
	case s.Authorizer.Gate() != authz.ReasonOK:
		// The gate loop opens checks up to 50 ms after the parts above are ready:
		// until then every check answers not_ready, so the sidecar is not ready.
		return "checks not open yet"
	}
	return ""
}

// gateLoop opens the authorizer once the replica and keys are ready, applies the
// staleness policy, and keeps gRPC health in step.
func (s *Sidecar) gateLoop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	serving := false
	for {
		gate := authz.ReasonOK
		switch {
		case !s.Replica.Ready() || !s.keys.Loaded(ctx):
			gate = authz.ReasonNotReady
		case s.cfg.MaxStaleness > 0 && s.cfg.StalePolicy == StaleDeny &&
			s.Replica.Staleness(time.Now()) > s.cfg.MaxStaleness:
			gate = authz.ReasonStale
		}
		if gate != s.Authorizer.Gate() {
			s.log.Info("check gate changed", "gate", gate.String())
			s.Authorizer.SetGate(gate)
		}
		if now := gate == authz.ReasonOK && !s.stopping.Load(); now != serving {
			serving = now
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			for _, svc := range []string{"", authzService} {
				s.health.SetServingStatus(svc, st)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GRPCAddr is the address the ext_authz gRPC server listens on (unix:///path for a socket).
func (s *Sidecar) GRPCAddr() string { return s.grpcAddr }

// HTTPAddr is the HTTP ext_authz address; empty when turned off.
func (s *Sidecar) HTTPAddr() string { return s.httpAddr }

// AdminAddr is the health and metrics address.
func (s *Sidecar) AdminAddr() string { return s.adminAddr }

// Ready reports whether the sidecar answers checks (replica synced, keys loaded).
func (s *Sidecar) Ready() bool { return s.status() == "" && s.Authorizer.Gate() == authz.ReasonOK }

// Drain starts a shutdown: /readyz and gRPC health say not ready from now on, while
// checks are still answered and the replica still follows the stream, so that Envoy
// can stop sending checks before Shutdown closes the listeners (--shutdown-delay).
func (s *Sidecar) Drain() {
	s.stopping.Store(true)
	if s.health != nil {
		s.health.Shutdown()
	}
}

// Shutdown stops gracefully: health turns NOT_SERVING, listeners stop accepting,
// in-flight checks finish (until ctx ends), then NATS closes.
func (s *Sidecar) Shutdown(ctx context.Context) error {
	s.Drain()
	var errs []error
	if s.grpcServer != nil {
		stopped := make(chan struct{})
		go func() { s.grpcServer.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.grpcServer.Stop()
			errs = append(errs, fmt.Errorf("grpc: %w", ctx.Err()))
		}
	}
	for _, srv := range []*http.Server{s.httpServer, s.adminSrv} {
		if srv != nil {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.Close()
	return errors.Join(errs...)
}

// Close stops everything at once.
func (s *Sidecar) Close() {
	s.stopping.Store(true)
	s.cancel()
	if s.grpcServer != nil {
		s.grpcServer.Stop()
	}
	for _, srv := range []*http.Server{s.httpServer, s.adminSrv} {
		if srv != nil {
			_ = srv.Close()
		}
	}
	if s.done != nil {
		<-s.done
	}
	if s.nc != nil {
		s.nc.Close()
	}
	if s.dev != nil {
		s.dev.close()
	}
}

// redactURL drops user information from NATS URLs before they are logged.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "[redacted]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

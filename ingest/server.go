package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/filewatch"
	"github.com/revoked-dev/revoked/jwtkeys"
	"github.com/revoked-dev/revoked/publish"
	"github.com/revoked-dev/revoked/ssf"
)

// Server is a running ingest API and its admin listener.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	nc      *nats.Conn
	pub     *publish.Publisher
	keys    *jwtkeys.Keys // nil: /oauth2/revoke and /backchannel-logout are off
	ssf     *ssf.Receiver // nil: /ssf/events is off
	metrics *metrics
	replay  *replayCache
	logout  logoutPolicy
	now     func() time.Time

	refreshing atomic.Bool    // a JWKS fetch keyfuncNoWait started is running
	bg         sync.WaitGroup // that fetch

	bearer  *secret            // nil when none
	clients map[string]*secret // --oauth-client secrets by client id
	cert    *certFile          // nil without TLS

	api, admin     *http.Server
	apiLn, adminLn net.Listener
	cancel         context.CancelFunc
	wg             sync.WaitGroup
	draining       atomic.Bool // set by Drain: not ready, still serving
}

// Start connects to NATS (in the background: until it is connected /readyz says 503),
// loads the keys and secrets, and serves the API and the admin endpoints. Metrics are
// registered with reg. The logger and reg are the caller's: the ingest API neither
// parses flags nor configures logging (internal/ingestd does, for `revoked ingest`).
func Start(ctx context.Context, cfg *Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	own := *cfg // the server keeps its own copy: the caller's stays as it was
	cfg = &own
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{cfg: cfg, log: log, now: time.Now, replay: newReplayCache(), cancel: cancel}
	s.logout, _ = cfg.logoutPolicy() // Validate checked it
	var watch filewatch.Watcher
	s.watchFiles(&watch) // before the files are read: a change in between is seen
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()
	if cfg.BearerTokenFile != "" {
		var err error
		if s.bearer, err = loadSecret(cfg.BearerTokenFile); err != nil {
			return nil, fmt.Errorf("--bearer-token-file: %w", err)
		}
	}
	if len(cfg.OAuthClients) > 0 {
		s.clients = map[string]*secret{}
		for _, oc := range cfg.OAuthClients {
			id, file, _ := strings.Cut(oc, ":")
			sec, err := loadSecret(file)
			if err != nil {
				return nil, fmt.Errorf("--oauth-client %s: %w", id, err)
			}
			s.clients[id] = sec
		}
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		keys, err := jwtkeys.New(ctx, jwtkeys.Config{File: cfg.JWKSFile, URL: cfg.JWKSURL}, log)
		if err != nil {
			return nil, err
		}
		s.keys = keys
	}
	if cfg.ClientCA != "" && len(cfg.ClientCertNames) == 0 {
		log.Warn("any client certificate --client-ca signs authenticates a caller: name the callers with --client-cert-name")
	}
	var tlsCfg *tls.Config
	if cfg.TLSCert != "" {
		var err error
		if s.cert, err = loadCert(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		if tlsCfg, err = serverTLS(cfg, s.cert); err != nil {
			return nil, err
		}
	}
	go watch.Run(ctx, reloadEvery)

	natsOpts := cfg.NATS
	natsOpts.Name = "revoked-ingest"
	nc, err := natsOpts.Connect(log)
	if err != nil {
		return nil, err
	}
	s.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, err
	}
	s.pub = publish.New(js, publish.Config{
		SubjectPrefix:  cfg.SubjectPrefix,
		Stream:         cfg.Stream,
		AllowedClaims:  cfg.allowedClaims(),
		AttemptTimeout: cfg.AckTimeout,
		Attempts:       cfg.Attempts,
	})
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.metrics, err = newMetrics(reg, nc); err != nil {
		return nil, err
	}
	if err := s.startSSF(ctx, reg); err != nil {
		return nil, fmt.Errorf("--ssf-transmitters: %w", err)
	}

	if s.apiLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	if tlsCfg != nil {
		s.apiLn = tls.NewListener(s.apiLn, tlsCfg)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
		return nil, fmt.Errorf("--admin-addr: %w", err)
	}
	s.api = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	adminMux := http.NewServeMux()
	adminMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	adminMux.HandleFunc("GET /readyz", s.readyz)
	gatherer, _ := reg.(prometheus.Gatherer)
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	adminMux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.admin = &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second}
	for _, p := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.api, s.apiLn}, {s.admin, s.adminLn}} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("ingest listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
	ok = true
	log.Info("ingest API listening", "addr", s.Addr(), "tls", tlsCfg != nil, "mtls", cfg.ClientCA != "", "admin", s.AdminAddr(),
		"revocations", cfg.revocationsOn(), "oauth2_revoke", cfg.oauthRevokeOn(), "backchannel_logout", cfg.logoutOn(), "ssf", cfg.ssfOn())
	return s, nil
}

func (c *Config) allowedClaims() []string {
	if len(c.CutoffClaims) == 0 {
		return nil
	}
	return c.CutoffClaims
}

func serverTLS(cfg *Config, cert *certFile) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.get}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca %s: no PEM certificate", cfg.ClientCA)
		}
		tc.ClientCAs = pool
		// A certificate, when given, must verify; a caller without one may still
		// authenticate with the bearer token.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// Addr is the API's address.
func (s *Server) Addr() string { return s.apiLn.Addr().String() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() string { return s.adminLn.Addr().String() }

// Drain starts a shutdown: /readyz answers 503 from now on while the API keeps
// serving, so that load balancers stop sending requests before Close stops accepting.
func (s *Server) Drain() { s.draining.Store(true) }

// Ready reports whether NATS is connected and the keys, when configured, are loaded,
// and no shutdown has begun.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	if !s.nc.IsConnected() {
		return errors.New("nats not connected")
	}
	if s.keys != nil && !s.keys.Loaded(ctx) {
		return errors.New("signing keys not loaded")
	}
	if s.ssf != nil {
		return s.ssf.Ready(ctx)
	}
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Close stops accepting requests, lets those in flight finish until ctx ends, and
// closes the NATS connection.
func (s *Server) Close(ctx context.Context) error {
	var errs []error
	if s.api != nil {
		errs = append(errs, s.api.Shutdown(ctx))
	}
	if s.admin != nil {
		errs = append(errs, s.admin.Shutdown(ctx))
	}
	s.wg.Wait()
	s.closeAll()
	if s.ssf != nil {
		s.ssf.Wait() // the poll workers send the acknowledgements they hold
	}
	return errors.Join(errs...)
}

func (s *Server) closeAll() {
	for _, ln := range []net.Listener{s.apiLn, s.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if s.nc != nil {
		s.nc.Close()
	}
	s.cancel()
	s.bg.Wait()
}

// Handler is the API: the three endpoints, each behind its authentication.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	revocations := s.requireCaller(s.revocations)
	if !s.cfg.revocationsOn() {
		revocations = func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "not_found", "/v1/revocations is off: start revoked ingest with --bearer-token-file or --client-ca to authenticate its callers")
		}
	}
	mux.Handle("/v1/revocations", s.endpoint("revocations", http.MethodPost, revocations))
	mux.Handle("/oauth2/revoke", s.endpoint("oauth2_revoke", http.MethodPost, s.oauthRevoke))
	mux.Handle("/backchannel-logout", s.endpoint("backchannel_logout", http.MethodPost, s.backchannelLogout))
	mux.Handle("/ssf/events", s.endpoint("ssf_events", http.MethodPost, s.ssfEvents))
	mux.Handle("/", s.endpoint("other", "", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: POST /v1/revocations, /oauth2/revoke, /backchannel-logout or /ssf/events")
	}))
	return mux
}

// endpoint counts and times requests, allows one method, and bounds the body.
func (s *Server) endpoint(name, method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		w = rec
		defer func() {
			s.metrics.requests.WithLabelValues(name, fmt.Sprint(rec.code)).Inc()
			s.metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
			s.log.Debug("ingest request", "endpoint", name, "code", rec.code, "remote", r.RemoteAddr, "duration", time.Since(start))
		}()
		w.Header().Set("Cache-Control", "no-store")
		if method != "" && r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use "+method)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxBody))
		h(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// authenticated reports whether the caller proved itself with a verified client
// certificate (mTLS) that --client-cert-name allows, or the bearer token.
func (s *Server) authenticated(r *http.Request) (ok bool, presented bool) {
	if s.cfg.ClientCA != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		if s.certAllowed(r.TLS.VerifiedChains[0][0]) {
			return true, true
		}
		presented = true
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(auth, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return false, presented || auth != ""
	}
	return s.bearer.matches(strings.TrimSpace(tok)), true
}

// certAllowed reports whether a verified client certificate names one of
// --client-cert-name (any does without the flag): its subject CN, or a DNS, URI
// (SPIFFE ID) or email SAN. A CA often signs more than the ingest's callers (a mesh
// CA signs every workload); the names keep the others out.
func (s *Server) certAllowed(c *x509.Certificate) bool {
	names := s.cfg.ClientCertNames
	if len(names) == 0 {
		return true
	}
	if c.Subject.CommonName != "" && slices.Contains(names, c.Subject.CommonName) {
		return true
	}
	for _, u := range c.URIs {
		if slices.Contains(names, u.String()) {
			return true
		}
	}
	return slices.ContainsFunc(c.DNSNames, func(n string) bool { return slices.Contains(names, n) }) ||
		slices.ContainsFunc(c.EmailAddresses, func(n string) bool { return slices.Contains(names, n) })
}

// requireCaller refuses unauthenticated callers with 401 (RFC 6750 section 3).
func (s *Server) requireCaller(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, presented := s.authenticated(r)
		if ok {
			h(w, r)
			return
		}
		if presented {
			w.Header().Set("WWW-Authenticate", `Bearer realm="revoked-ingest", error="invalid_token", error_description="bad credentials"`)
			writeError(w, http.StatusUnauthorized, "invalid_token", "bad credentials")
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="revoked-ingest"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "authenticate with the bearer token or a client certificate")
	}
}

// apiError is the JSON body of every error answer (the OAuth 2.0 form).
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, desc string) {
	writeJSON(w, code, apiError{Error: errCode, Description: desc})
}

// bodyError answers a body that could not be read: 413 when it is too large.
func bodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body larger than %d bytes", tooBig.Limit))
		return
	}
	writeError(w, http.StatusBadRequest, "invalid_request", "cannot read the body: "+err.Error())
}

// publishFailure is the answer to err, the failure to publish an event for endpoint,
// counted and logged; on a 503 it sets Retry-After on w. An event the contract refuses
// is the request's fault: 400 invalid_request, counted under its rejection reason,
// saying that what (the request's part the event came from) cannot form a revocation.
// Any other error is publish.FailureOf's answer (503 only when a retry may succeed),
// counted as a publish error. logArgs are added to the log line.
func (s *Server) publishFailure(w http.ResponseWriter, endpoint, what string, err error, logArgs ...any) (int, apiError) {
	var evErr *event.Error
	if errors.As(err, &evErr) {
		s.metrics.rejected.WithLabelValues(endpoint, event.Reason(err)).Inc()
		return http.StatusBadRequest, apiError{"invalid_request", what + " cannot form a revocation: " + evErr.Detail}
	}
	s.metrics.publishErrors.WithLabelValues(endpoint).Inc()
	s.log.Warn("publish failed", append([]any{"endpoint", endpoint, "err", err}, logArgs...)...)
	f := publish.FailureOf(err)
	if f.Retry() {
		w.Header().Set("Retry-After", "1")
	}
	return f.Status, apiError{f.Code, f.Description}
}

// publishFailed answers err as publishFailure says.
func (s *Server) publishFailed(w http.ResponseWriter, endpoint, what string, err error) {
	code, body := s.publishFailure(w, endpoint, what, err)
	writeJSON(w, code, body)
}

// hashID is what the logs show of a jti: a short SHA-256 prefix.
func hashID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

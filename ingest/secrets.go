package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/revoked-dev/revoked/internal/filewatch"
	"github.com/revoked-dev/revoked/internal/secretfile"
)

// reloadEvery is how often secret and certificate files are polled for a change, so
// that a rotated Kubernetes Secret takes effect without a restart. Tests shorten it.
var reloadEvery = 10 * time.Second

// secret is a secret read from a file, kept as its SHA-256 (compared in constant time)
// and reloaded when the file changes. A file that turns unreadable or too short keeps
// the previous secret.
type secret struct {
	path string
	sum  atomic.Pointer[[32]byte]
}

func loadSecret(path string) (*secret, error) {
	s := &secret{path: path}
	v, err := secretfile.Read(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(v))
	s.sum.Store(&sum)
	return s, nil
}

// matches reports whether v is the secret.
func (s *secret) matches(v string) bool {
	if s == nil {
		return false
	}
	got := sha256.Sum256([]byte(v))
	want := s.sum.Load()
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func (s *secret) reload(log *slog.Logger) {
	v, err := secretfile.Read(s.path)
	if err != nil {
		log.Warn("secret reload failed; keeping the old one", "file", s.path, "err", err)
		return
	}
	sum := sha256.Sum256([]byte(v))
	if old := s.sum.Swap(&sum); *old != sum {
		log.Info("secret reloaded", "file", s.path)
	}
}

// certFile serves the TLS certificate and reloads it when its files change.
type certFile struct {
	certPath, keyPath string
	cert              atomic.Pointer[tls.Certificate]
}

func loadCert(certPath, keyPath string) (*certFile, error) {
	c := &certFile{certPath: certPath, keyPath: keyPath}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the pair again; a pair that does not load keeps the one served (a
// certificate written before its key is a mismatch until the key follows).
func (c *certFile) reload() error {
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return err
	}
	c.cert.Store(&cert)
	return nil
}

func (c *certFile) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }

// watchFiles adds the secret and certificate files to w, which reloads each when its
// content changes (package filewatch). It is called before they are first read.
func (s *Server) watchFiles(w *filewatch.Watcher) {
	cfg := s.cfg
	if cfg.BearerTokenFile != "" {
		w.Add(func() { s.bearer.reload(s.log) }, cfg.BearerTokenFile)
	}
	for _, oc := range cfg.OAuthClients {
		id, file, _ := strings.Cut(oc, ":")
		w.Add(func() { s.clients[id].reload(s.log) }, file)
	}
	if cfg.TLSCert != "" {
		w.Add(func() {
			if err := s.cert.reload(); err != nil {
				s.log.Warn("TLS certificate reload failed; keeping the old one", "err", err)
				return
			}
			s.log.Info("TLS certificate reloaded", "file", cfg.TLSCert)
		}, cfg.TLSCert, cfg.TLSKey)
	}
}

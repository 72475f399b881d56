package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// reloadEvery is how often secret and certificate files are read again, so that a
// rotated Kubernetes Secret takes effect without a restart. Tests shorten it.
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
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
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
	b, err := readSecretFile(s.path)
	if err != nil {
		log.Warn("secret reload failed; keeping the old one", "file", s.path, "err", err)
		return
	}
	sum := sha256.Sum256(b)
	if old := s.sum.Swap(&sum); *old != sum {
		log.Info("secret reloaded", "file", s.path)
	}
}

// certFile serves the TLS certificate and reloads it when its files change.
type certFile struct {
	certPath, keyPath string
	cert              atomic.Pointer[tls.Certificate]
	last              []byte
}

func loadCert(certPath, keyPath string) (*certFile, error) {
	c := &certFile{certPath: certPath, keyPath: keyPath}
	if _, err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the pair again; it reports whether it changed.
func (c *certFile) reload() (bool, error) {
	certPEM, err := os.ReadFile(c.certPath)
	if err != nil {
		return false, err
	}
	keyPEM, err := os.ReadFile(c.keyPath)
	if err != nil {
		return false, err
	}
	both := append(append([]byte{}, certPEM...), keyPEM...)
	if c.last != nil && bytes.Equal(both, c.last) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, err
	}
	c.cert.Store(&cert)
	c.last = both
	return true, nil
}

func (c *certFile) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }

// watchFiles reloads the secrets and the certificate every interval until ctx ends.
func (s *Server) watchFiles(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.bearer != nil {
			s.bearer.reload(s.log)
		}
		for _, c := range s.clients {
			c.reload(s.log)
		}
		if s.cert != nil {
			if changed, err := s.cert.reload(); err != nil {
				s.log.Warn("TLS certificate reload failed; keeping the old one", "err", err)
			} else if changed {
				s.log.Info("TLS certificate reloaded", "file", s.cert.certPath)
			}
		}
	}
}

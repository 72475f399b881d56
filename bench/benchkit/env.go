package benchkit

import (
	"context"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/stream"
)

// Env is what every benchmark driver starts from: a work directory, a nats-server
// process with the revocation stream, a client connection to it, and an issuer whose
// JWKS (Dir/jwks.json) the sidecars trust.
type Env struct {
	Dir    string
	URL    string
	NATS   *Proc
	Issuer *Issuer
	NC     *nats.Conn
	JS     jetstream.JetStream
	tmp    bool
}

// NewEnv sets up an Env in dir, or in a new temporary directory (removed by Close)
// named after name when dir is empty.
func NewEnv(ctx context.Context, natsBin, dir, name string) (e *Env, err error) {
	e = &Env{Dir: dir}
	started := e // the error returns below set e to nil
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if dir == "" {
		if e.Dir, err = os.MkdirTemp("", name); err != nil {
			return nil, err
		}
		e.tmp = true
	} else if err = os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if e.NATS, e.URL, err = StartNATS(natsBin, e.Dir); err != nil {
		return nil, err
	}
	if e.Issuer, err = LoadOrCreateIssuer(filepath.Join(e.Dir, "key.pem"), e.JWKSPath(), "https://idp.example.com", "api"); err != nil {
		return nil, err
	}
	if e.NC, err = nats.Connect(e.URL); err != nil {
		return nil, err
	}
	e.JS, _ = jetstream.New(e.NC)
	if _, err = stream.Ensure(ctx, e.JS, stream.Settings{}); err != nil {
		return nil, err
	}
	return e, nil
}

// JWKSPath is the JWKS file the sidecars get with --jwks-file.
func (e *Env) JWKSPath() string { return filepath.Join(e.Dir, "jwks.json") }

// Close stops everything NewEnv started and removes a temporary directory.
func (e *Env) Close() {
	if e.NC != nil {
		e.NC.Close()
	}
	if e.NATS != nil {
		e.NATS.Stop()
	}
	if e.tmp {
		_ = os.RemoveAll(e.Dir)
	}
}

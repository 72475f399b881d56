// Package natsconn holds the NATS connection settings shared by the sidecar, revokectl
// and the ingest API: servers, the four ways to authenticate, and TLS.
package natsconn

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Options are the connection settings. Register them with RegisterFlags.
type Options struct {
	URL      string // comma-separated server URLs
	Creds    string // .creds file (user JWT and NKey seed)
	NKeySeed string // file holding an NKey seed
	User     string
	Password string
	Token    string
	TLSCA    string // CA bundle to verify the servers
	TLSCert  string // client certificate, for mutual TLS
	TLSKey   string // client key, for mutual TLS
	Name     string // connection name shown by the server
}

// DefaultURL is the contract's default server.
const DefaultURL = "nats://127.0.0.1:4222"

// RegisterFlags adds the connection flags to fs.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.URL, "nats-url", DefaultURL, "NATS servers, comma-separated")
	fs.StringVar(&o.Creds, "nats-creds", "", "NATS .creds file (user JWT and NKey seed)")
	fs.StringVar(&o.NKeySeed, "nats-nkey", "", "file holding a NATS NKey seed")
	fs.StringVar(&o.User, "nats-user", "", "NATS user name")
	fs.StringVar(&o.Password, "nats-password", "", "NATS password")
	fs.StringVar(&o.Token, "nats-token", "", "NATS authentication token")
	fs.StringVar(&o.TLSCA, "nats-tls-ca", "", "CA bundle that signs the NATS servers' certificates")
	fs.StringVar(&o.TLSCert, "nats-tls-cert", "", "client certificate for NATS mutual TLS")
	fs.StringVar(&o.TLSKey, "nats-tls-key", "", "client key for NATS mutual TLS")
}

// Validate reports settings that cannot work together.
func (o *Options) Validate() error {
	if o.URL == "" {
		return errors.New("nats-url is empty")
	}
	n := 0
	for _, set := range []bool{o.Creds != "", o.NKeySeed != "", o.User != "", o.Token != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("choose one NATS authentication: creds, nkey, user/password or token")
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("nats-tls-cert and nats-tls-key go together")
	}
	return nil
}

// NATSOptions turns the settings into nats.go options. Reconnects never stop: a sidecar
// keeps serving from its replica and catches up when the servers return.
func (o *Options) NATSOptions(log *slog.Logger) ([]nats.Option, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
	}
	if log != nil {
		opts = append(opts,
			nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
				if !c.IsClosed() {
					log.Warn("nats disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(c *nats.Conn) {
				log.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
			}),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				log.Warn("nats async error", "err", err)
			}),
		)
	}
	switch {
	case o.Creds != "":
		opts = append(opts, nats.UserCredentials(o.Creds))
	case o.NKeySeed != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nats nkey: %w", err)
		}
		opts = append(opts, opt)
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" {
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	return opts, nil
}

// Connect dials the servers. With RetryOnFailedConnect it returns at once even when no
// server is up yet; callers watch readiness instead.
func (o *Options) Connect(log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := o.NATSOptions(log)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(o.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", o.URL, err)
	}
	return nc, nil
}

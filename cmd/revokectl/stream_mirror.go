package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/stream"
)

// initMirror is stream init --mirror-of: it creates or updates the region's mirror and
// says whether it hears from its origin yet.
func initMirror(e *env, c *conn, s stream.Settings, origin stream.Origin) error {
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	verb := "updated"
	if _, err := js.Stream(e.ctx, s.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
		verb = "created"
	}
	st, err := stream.EnsureMirror(e.ctx, js, s, origin)
	if err != nil {
		return err
	}
	ai, err := js.AccountInfo(e.ctx)
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	fmt.Fprintf(e.stdout, "mirror %s %s in JetStream domain %q: a copy of stream %s in domain %s, %s storage, max age %s, at most %d events, %d replica(s); the region's sidecars follow it with --stream %s\n",
		cfg.Name, verb, ai.Domain, origin.Stream, origin.Domain, strings.ToLower(cfg.Storage.String()), cfg.MaxAge, cfg.MaxMsgs, cfg.Replicas, cfg.Name)
	// A new mirror reports no contact for a moment while it sets up its link.
	deadline := time.Now().Add(3 * time.Second)
	for {
		info, err := st.Info(e.ctx)
		if err != nil {
			return err
		}
		if m := info.Mirror; m != nil && m.Active >= 0 {
			fmt.Fprintf(e.stdout, "it hears from its origin: %d events copied, %d behind\n", info.State.Msgs, m.Lag)
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(e.stdout, "it has not heard from its origin yet: check the leaf node link to the hub (revokectl stream info --stream %s shows it)\n", cfg.Name)
			return nil
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mirrorSummary is what stream info shows of a mirror.
type mirrorSummary struct {
	Origin string `json:"origin"`
	Domain string `json:"domain,omitempty"`
	Lag    uint64 `json:"lag"` // events of the origin not copied yet, as last known
	// ActiveSeconds is the time since the mirror last heard from its origin; -1: never.
	ActiveSeconds float64 `json:"active_seconds"`
	Error         string  `json:"error,omitempty"`
}

func summarizeMirror(info *jetstream.StreamInfo) *mirrorSummary {
	o, ok := stream.MirrorOrigin(info.Config)
	if !ok {
		return nil
	}
	m := &mirrorSummary{Origin: o.Stream, Domain: o.Domain, ActiveSeconds: -1}
	if si := info.Mirror; si != nil {
		m.Lag = si.Lag
		if si.Active >= 0 {
			m.ActiveSeconds = si.Active.Seconds()
		}
		if si.Error != nil {
			m.Error = si.Error.Error()
		}
	}
	return m
}

// cutOff says why a mirror's sidecars are stale; empty while it follows its origin.
func (m *mirrorSummary) cutOff() string {
	switch {
	case m.Error != "":
		return "its link to the origin fails: " + m.Error
	case m.ActiveSeconds < 0:
		return "it has not heard from its origin"
	case m.ActiveSeconds > stream.MirrorSilence.Seconds():
		return fmt.Sprintf("it has not heard from its origin for %s", roundAge(time.Duration(m.ActiveSeconds*float64(time.Second))))
	}
	return ""
}

func (m *mirrorSummary) print(w io.Writer) {
	where := ""
	if m.Domain != "" {
		where = " in JetStream domain " + m.Domain
	}
	fmt.Fprintf(w, "mirror of\t%s%s\n", m.Origin, where)
	fmt.Fprintf(w, "mirror lag\t%d events\n", m.Lag)
	if m.ActiveSeconds < 0 {
		fmt.Fprintf(w, "mirror active\tnever (no contact with its origin)\n")
	} else {
		fmt.Fprintf(w, "mirror active\t%s ago\n", roundAge(time.Duration(m.ActiveSeconds*float64(time.Second))))
	}
	if m.Error != "" {
		fmt.Fprintf(w, "mirror error\t%s\n", m.Error)
	}
}

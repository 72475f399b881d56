package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/stream"
)

var streamInitCmd = &command{
	path:    "stream init",
	args:    "[flags]",
	summary: "create the revocation stream, or update it to these settings",
	help: `
The stream keeps every revocation event for as long as a token it revokes can live
(its MaxAge is --max-token-lifetime plus 10m, which covers the sidecars' --leeway), on
file storage, with a duplicate window in which a retried event (same Nats-Msg-Id) is
stored once. It holds at most --max-msgs events: when full it refuses new ones (the
publisher gets an error) rather than drop acknowledged revocations. On a NATS cluster
give it --replicas 3. Running it again updates the stream; sidecars only read it, and
refuse to be ready on a stream whose MaxAge is shorter than their own
--max-token-lifetime plus --leeway.

In a region with its own NATS (a leaf node of the hub, in its own JetStream domain),
--mirror-of DOMAIN creates the region's copy instead: a mirror of the hub's stream
(--origin-stream, in JetStream domain DOMAIN) with the same limits, no subjects and no
duplicate window. The region's sidecars replay and follow it (their --stream), so
checks and replays never cross regions, and a region cut off from the hub keeps
enforcing what it has (its sidecars report themselves stale). Revocations published in
the region cross the leaf node to the hub's stream. Run it against the region's NATS;
the hub must be reachable, and the mirror keeps at least as many events (--max-msgs) as
its origin.

Examples:
  revokectl stream init
  revokectl stream init --max-token-lifetime 12h --replicas 3 --nats-url nats://nats:4222
  revokectl stream init --mirror-of hub --nats-url nats://nats.region-a:4222`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		var s stream.Settings
		fs.DurationVar(&s.MaxTokenLifetime, "max-token-lifetime", 24*time.Hour, "longest lifetime of a token, a `DURATION`: how long events are kept (the stream's MaxAge)")
		fs.DurationVar(&s.DuplicateWindow, "duplicate-window", 2*time.Minute, "`DURATION` in which an event published twice (same Nats-Msg-Id) is stored once")
		fs.IntVar(&s.Replicas, "replicas", 1, "`N` copies of the stream on a NATS cluster (1, 3 or 5)")
		fs.Int64Var(&s.MaxMsgs, "max-msgs", stream.DefaultMaxMsgs, "`N` events kept at most; past it new events are refused (keep it at or below the sidecars' --max-entries)")
		var origin stream.Origin
		fs.StringVar(&origin.Domain, "mirror-of", "", "create a region's mirror of the stream kept in the hub's JetStream `DOMAIN` (reached over a leaf node) instead of the stream itself")
		fs.StringVar(&origin.Stream, "origin-stream", event.DefaultStream, "with --mirror-of: `NAME` of the stream in the hub's domain")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			switch {
			case s.MaxTokenLifetime <= 0:
				return usagef("--max-token-lifetime must be positive")
			case s.DuplicateWindow < 2*time.Minute:
				return usagef("--duplicate-window must be at least 2m (CONTRACT section 2)")
			case s.DuplicateWindow > s.MaxTokenLifetime:
				return usagef("--duplicate-window cannot exceed --max-token-lifetime")
			case s.Replicas < 1 || s.Replicas > 5:
				return usagef("--replicas must be 1 to 5")
			case s.MaxMsgs <= 0:
				return usagef("--max-msgs must be positive")
			}
			s.Name, s.SubjectPrefix = c.stream, c.subjectPrefix
			if origin.Domain != "" {
				if err := stream.ValidDomain(origin.Domain); err != nil {
					return usagef("--mirror-of: %v", err)
				}
				if origin.Stream == "" {
					return usagef("--origin-stream must not be empty")
				}
				return initMirror(e, c, s, origin)
			}
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			verb := "updated"
			if _, err := js.Stream(e.ctx, s.Name); errors.Is(err, jetstream.ErrStreamNotFound) {
				verb = "created"
			}
			st, err := stream.Ensure(e.ctx, js, s)
			if err != nil {
				return err
			}
			cfg := st.CachedInfo().Config
			fmt.Fprintf(e.stdout, "stream %s %s: subjects %s, %s storage, max age %s, duplicate window %s, at most %d events (new ones refused when full), %d replica(s)\n",
				cfg.Name, verb, strings.Join(cfg.Subjects, ","), strings.ToLower(cfg.Storage.String()), cfg.MaxAge, cfg.Duplicates, cfg.MaxMsgs, cfg.Replicas)
			return nil
		}
	},
}

var streamInfoCmd = &command{
	path:    "stream info",
	args:    "[flags]",
	summary: "show the stream's messages, bytes, first and last sequence, and age; check its revocation window",
	help: `
It also checks that the stream keeps events long enough for the sidecars' settings
(MaxAge at least --max-token-lifetime plus --leeway): when it does not, it says so and
exits with status 1, since sidecars refuse to be ready on such a stream.

On a region's mirror (stream init --mirror-of) it shows the origin, the mirror's lag
and when it last heard from its origin, and exits with status 1 while the mirror is cut
off (no contact for more than 5s, or a failing link): the sidecars following it are
stale then.

Examples:
  revokectl stream info
  revokectl stream info --max-token-lifetime 12h
  revokectl stream info --json | jq .messages`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		asJSON := fs.Bool("json", false, "print JSON instead of a table")
		lifetime := fs.Duration("max-token-lifetime", 24*time.Hour, "the sidecars' --max-token-lifetime, a `DURATION`")
		leeway := fs.Duration("leeway", 10*time.Second, "the sidecars' --leeway, a `DURATION`")
		return func(e *env, c *conn, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected argument %q", args[0])
			}
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := js.Stream(e.ctx, c.stream)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("%s: %w", c.stream, stream.ErrNoStream)
			}
			if err != nil {
				return err
			}
			info, err := st.Info(e.ctx)
			if err != nil {
				return err
			}
			if err := printStreamInfo(e, info, time.Now(), *asJSON); err != nil {
				return err
			}
			if m := summarizeMirror(info); m != nil {
				if why := m.cutOff(); why != "" {
					return fmt.Errorf("mirror %s is cut off from its origin %s: %s; the sidecars following it are stale (check the leaf node link to the hub)", info.Config.Name, m.Origin, why)
				}
			}
			if !stream.CoversWindow(info.Config.MaxAge, *lifetime, *leeway) {
				return fmt.Errorf("stream %s keeps events for %s, less than the revocation window (%s tokens + %s leeway = %s): sidecars will not be ready; run revokectl stream init --max-token-lifetime %s",
					info.Config.Name, info.Config.MaxAge, *lifetime, *leeway, stream.MinMaxAge(*lifetime, *leeway), *lifetime)
			}
			return nil
		}
	},
}

type streamSummary struct {
	Stream          string    `json:"stream"`
	Subjects        []string  `json:"subjects"`
	Messages        uint64    `json:"messages"`
	Bytes           uint64    `json:"bytes"`
	FirstSeq        uint64    `json:"first_seq"`
	FirstTime       time.Time `json:"first_time"`
	LastSeq         uint64    `json:"last_seq"`
	LastTime        time.Time `json:"last_time"`
	AgeSeconds      float64   `json:"age_seconds"` // age of the oldest event kept
	MaxAge          string    `json:"max_age"`
	MaxMsgs         int64     `json:"max_msgs"`
	Discard         string    `json:"discard"`
	DuplicateWindow string    `json:"duplicate_window"`
	Replicas        int       `json:"replicas"`
	Storage         string    `json:"storage"`
	// Mirror is set on a region's mirror of the stream (stream init --mirror-of).
	Mirror *mirrorSummary `json:"mirror,omitempty"`
}

func printStreamInfo(e *env, info *jetstream.StreamInfo, now time.Time, asJSON bool) error {
	st := info.State
	s := streamSummary{
		Stream: info.Config.Name, Subjects: info.Config.Subjects,
		Messages: st.Msgs, Bytes: st.Bytes,
		FirstSeq: st.FirstSeq, FirstTime: st.FirstTime.UTC(),
		LastSeq: st.LastSeq, LastTime: st.LastTime.UTC(),
		MaxAge: info.Config.MaxAge.String(), DuplicateWindow: info.Config.Duplicates.String(),
		MaxMsgs: info.Config.MaxMsgs, Discard: "old",
		Replicas: info.Config.Replicas, Storage: strings.ToLower(info.Config.Storage.String()),
		Mirror: summarizeMirror(info),
	}
	if info.Config.Discard == jetstream.DiscardNew {
		s.Discard = "new"
	}
	if st.Msgs > 0 {
		s.AgeSeconds = now.Sub(st.FirstTime).Seconds()
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "stream\t%s\n", s.Stream)
	if s.Mirror != nil {
		fmt.Fprintf(tw, "subjects\t(none: a mirror takes no publishes)\n")
		s.Mirror.print(tw)
	} else {
		fmt.Fprintf(tw, "subjects\t%s\n", strings.Join(s.Subjects, ", "))
	}
	fmt.Fprintf(tw, "messages\t%d\n", s.Messages)
	fmt.Fprintf(tw, "bytes\t%d (%s)\n", s.Bytes, humanBytes(s.Bytes))
	if st.Msgs == 0 {
		fmt.Fprintf(tw, "first sequence\t%d (no events)\n", s.FirstSeq)
		fmt.Fprintf(tw, "last sequence\t%d\n", s.LastSeq)
		fmt.Fprintf(tw, "age\t-\n")
	} else {
		fmt.Fprintf(tw, "first sequence\t%d at %s\n", s.FirstSeq, s.FirstTime.Format(time.RFC3339))
		fmt.Fprintf(tw, "last sequence\t%d at %s (%s ago)\n", s.LastSeq, s.LastTime.Format(time.RFC3339), roundAge(now.Sub(st.LastTime)))
		fmt.Fprintf(tw, "age\t%s (oldest event kept)\n", roundAge(now.Sub(st.FirstTime)))
	}
	fmt.Fprintf(tw, "max age\t%s\n", s.MaxAge)
	fmt.Fprintf(tw, "max messages\t%d (discard %s)\n", s.MaxMsgs, s.Discard)
	if s.Mirror != nil {
		fmt.Fprintf(tw, "duplicate window\tnone (a mirror: its origin deduplicates)\n")
	} else {
		fmt.Fprintf(tw, "duplicate window\t%s\n", s.DuplicateWindow)
	}
	fmt.Fprintf(tw, "storage\t%s, %d replica(s)\n", s.Storage, s.Replicas)
	return tw.Flush()
}

func roundAge(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

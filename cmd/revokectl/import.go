package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/flagenv"
	"github.com/revoked-dev/revoked/publish"
)

var importCmd = &command{
	path:    "import",
	args:    "FILE|- [flags]",
	summary: "publish revocation events in bulk from a JSON-lines file",
	help: `
FILE holds one contract event per line (the JSON an IdP publishes, CONTRACT section 2);
- reads standard input. Blank lines are skipped. Every line is validated before it is
sent; a bad line is rejected, reported with its number, and the import goes on.
An event without source is published with "source":"revokectl".
Events are published asynchronously, at most --max-in-flight awaiting their ack, and
counted only once the stream has acknowledged them. An event without event_id gets a
Nats-Msg-Id derived from its content, so importing the same file again within the
stream's duplicate window stores nothing twice (those count as duplicates). If the stream
cannot be reached, the import stops and exits 1: every event not counted as published
or duplicate must be imported again.

A progress bar is drawn when standard error is a terminal.

Example lines:
  {"type":"jti","jti":"7f3c9a1e","exp":1767225600,"iss":"https://idp.example.com"}
  {"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000}

Examples:
  revokectl import revocations.jsonl
  zcat revocations.jsonl.gz | revokectl import - --max-in-flight 4096`,
	nats: true,
	setup: func(fs *flag.FlagSet) func(*env, *conn, []string) error {
		inFlight := fs.Int("max-in-flight", 4096, "`N` events awaiting their ack at a time")
		progress := fs.String("progress", "auto", "progress bar on standard error: `WHEN` = auto (on a terminal), always or never")
		var claims flagenv.Strings
		fs.Var(&claims, "cutoff-claim", "`CLAIM` a cutoff event may name besides sub, sid and client_id, which are always allowed (repeatable)")
		return func(e *env, c *conn, args []string) error {
			if len(args) != 1 {
				return usagef("want one FILE (or - for standard input), got %d arguments", len(args))
			}
			if *inFlight < 1 {
				return usagef("--max-in-flight must be at least 1")
			}
			if *progress != "auto" && *progress != "always" && *progress != "never" {
				return usagef("--progress must be auto, always or never")
			}
			var allowed []string
			if len(claims) > 0 {
				allowed = claims
			}
			in, size, err := openInput(e, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			nc, js, err := c.connect(jetstream.WithPublishAsyncTimeout(c.ackTimeout), jetstream.WithPublishAsyncMaxPending(*inFlight+1))
			if err != nil {
				return err
			}
			defer nc.Close()
			var r io.Reader = in
			var bar *progressbar.ProgressBar
			if _, tty := isTerminal(e.stderr); *progress == "always" || *progress == "auto" && tty {
				bar = progressbar.NewOptions64(size,
					progressbar.OptionSetWriter(e.stderr),
					progressbar.OptionSetDescription("importing"),
					progressbar.OptionShowBytes(true),
					progressbar.OptionShowCount(),
					progressbar.OptionThrottle(100*time.Millisecond),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionClearOnFinish(),
				)
				pr := progressbar.NewReader(in, bar)
				r = &pr
			}
			res := importEvents(e, c.publisher(js, allowed), r, allowed, *inFlight)
			if bar != nil {
				_ = bar.Finish()
			}
			res.print(e.stdout, args[0])
			return res.err()
		}
	},
}

func openInput(e *env, name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(e.stdin), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// lineError is a rejected line.
type lineError struct {
	line int
	err  error
}

// importResult counts what an import did.
type importResult struct {
	lines      int // last line read
	published  int
	duplicates int
	rejected   []lineError
	failed     int
	firstFail  error
	stopped    error // the pipeline broke: lines after lines were not read
	readErr    error
	elapsed    time.Duration
}

func importEvents(e *env, p *publish.Publisher, r io.Reader, allowed []string, inFlight int) *importResult {
	res := &importResult{}
	start := time.Now()
	pl := p.NewPipeline(e.ctx, inFlight, func(_ int, r publish.Result, err error) {
		switch {
		case err != nil:
			res.failed++
			if res.firstFail == nil {
				res.firstFail = err
			}
		case r.Duplicate:
			res.duplicates++
		default:
			res.published++
		}
	})
	res.readErr = readEvents(r, allowed, func(line int, ev event.Event, err error) bool {
		res.lines = line
		if err == nil {
			if ev.Source == "" {
				ev.Source = source // an event that names its own source keeps it
			}
			err = pl.Publish(line, ev)
		}
		switch {
		case errors.Is(err, publish.ErrUnavailable):
			res.stopped = err
			return false
		case err != nil:
			res.rejected = append(res.rejected, lineError{line, err})
		}
		return e.ctx.Err() == nil
	})
	pl.Close()
	if res.stopped == nil && e.ctx.Err() != nil {
		res.stopped = e.ctx.Err()
	}
	res.elapsed = time.Since(start)
	return res
}

// maxLine is the longest line read whole; longer ones are rejected as too large without
// being held in memory.
const maxLine = 2 * event.MaxPayload

// readEvents calls fn for every non-blank line of r, numbered from 1, with its decoded
// and validated event or the reason it is rejected. It stops when fn returns false.
func readEvents(r io.Reader, allowed []string, fn func(line int, ev event.Event, err error) bool) error {
	br := bufio.NewReaderSize(r, maxLine)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		tooLong := errors.Is(err, bufio.ErrBufferFull)
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = br.ReadSlice('\n')
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("line %d: %w", n, err)
		}
		eof := err != nil
		var cont = true
		switch {
		case tooLong:
			cont = fn(n, event.Event{}, &event.Error{Kind: event.ErrTooLarge, Detail: fmt.Sprintf("line longer than %d bytes", maxLine)})
		case len(bytes.TrimSpace(line)) > 0:
			ev, derr := event.Decode(bytes.TrimRight(line, "\r\n"), allowed)
			cont = fn(n, ev, derr)
		}
		if eof || !cont {
			return nil
		}
	}
}

const maxListed = 100

func (res *importResult) print(w io.Writer, name string) {
	if name == "-" {
		name = "standard input"
	}
	done := res.published + res.duplicates
	rate := float64(done) / max(res.elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "import %s: %d lines in %s, %.0f events/s\n", name, res.lines, res.elapsed.Round(time.Millisecond), rate)
	fmt.Fprintf(w, "  published   %8d\n", res.published)
	fmt.Fprintf(w, "  duplicates  %8d  (already in the stream, not stored again)\n", res.duplicates)
	fmt.Fprintf(w, "  rejected    %8d\n", len(res.rejected))
	if res.failed > 0 {
		fmt.Fprintf(w, "  failed      %8d  (not acknowledged by the stream: import again, nothing is doubled)\n", res.failed)
	}
	if res.stopped != nil {
		fmt.Fprintf(w, "stopped after line %d: %v\nlines after it were not read\n", res.lines, res.stopped)
	} else if res.firstFail != nil {
		fmt.Fprintf(w, "first failure: %v\n", res.firstFail)
	}
	if res.readErr != nil {
		fmt.Fprintf(w, "read error: %v\n", res.readErr)
	}
	if len(res.rejected) > 0 {
		fmt.Fprintf(w, "rejected lines:\n")
		for i, le := range res.rejected {
			if i == maxListed {
				fmt.Fprintf(w, "  ... and %d more\n", len(res.rejected)-maxListed)
				break
			}
			fmt.Fprintf(w, "  line %d: %v\n", le.line, le.err)
		}
	}
}

func (res *importResult) err() error {
	if res.failed > 0 || res.stopped != nil || res.readErr != nil || len(res.rejected) > 0 {
		return exitError{code: exitFailed, msg: fmt.Sprintf("not every line was imported (%d rejected, %d failed)", len(res.rejected), res.failed)}
	}
	return nil
}

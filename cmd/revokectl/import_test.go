package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/revoked-dev/revoked/event"
	"github.com/revoked-dev/revoked/internal/testsupport"
	"github.com/revoked-dev/revoked/stream"
)

const goodLines = `{"type":"jti","jti":"a","exp":1767225600,"iss":"https://idp.example.com"}
{"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000,"unknown_field":true}
`

func TestImport(t *testing.T) {
	srv, js := natsEnv(t)
	url := "--nats-url=" + srv.URL()
	content := goodLines +
		"\n" + // 3: blank, skipped
		`{"type":"jti","jti":"b",` + "\n" + // 4: malformed JSON
		`{"type":"session","value":"x"}` + "\n" + // 5: unknown type
		`{"type":"cutoff","claim":"email","value":"a@b","not_before":1}` + "\n" + // 6: claim not allowed
		`{"type":"jti","jti":"c","exp":1767225600,"sub":"` + strings.Repeat("s", 5000) + `"}` + "\n" + // 7: too large
		`{"type":"jti","jti":"d","exp":1767225600,"sub":"` + strings.Repeat("s", 20000) + `"}` + "\n" + // 8: longer than a line may be
		`{"type":"jti","jti":"e","exp":1767225600}` // 9: last line without newline
	file := writeFile(t, "events.jsonl", content)

	r := cli(t, "", "import", file, url).want(t, exitFailed)
	if got := []int{summaryCount(r.stdout, "published"), summaryCount(r.stdout, "duplicates"), summaryCount(r.stdout, "rejected")}; got[0] != 3 || got[1] != 0 || got[2] != 5 {
		t.Fatalf("published, duplicates, rejected = %v\n%s", got, r.stdout)
	}
	for _, s := range []string{
		"line 4: event: payload is not a JSON object",
		`line 5: event: unknown type: "session"`,
		`line 6: event: invalid field: claim "email" not allowed`,
		"line 7: event: payload larger than 4 KiB",
		"line 8: event: payload larger than 4 KiB",
		"9 lines in ",
		"events/s",
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("summary lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "line 3:") || strings.Contains(r.stdout, "line 9:") {
		t.Errorf("a good or blank line was rejected:\n%s", r.stdout)
	}
	evs := stored(t, js)
	if len(evs) != 3 || evs[0].JTI != "a" || evs[1].Value != "user-42" || evs[2].JTI != "e" {
		t.Fatalf("stored %+v", evs)
	}

	// Importing the same events again stores nothing twice; stdin works as a file.
	r = cli(t, goodLines, "import", "-", url).want(t, exitOK)
	if summaryCount(r.stdout, "published") != 0 || summaryCount(r.stdout, "duplicates") != 2 || !strings.Contains(r.stdout, "standard input") {
		t.Fatalf("re-import:\n%s", r.stdout)
	}
	if n := len(stored(t, js)); n != 3 {
		t.Fatalf("%d events after re-import, want 3", n)
	}

	// A claim the operator allows.
	cli(t, `{"type":"cutoff","claim":"email","value":"a@b","not_before":1}`, "import", "-", "--cutoff-claim", "email", url).want(t, exitOK)

	// The progress bar, forced on (standard error is not a terminal here), goes to
	// standard error and leaves the summary alone.
	r = cli(t, "", "import", file, url, "--progress", "always").want(t, exitFailed)
	if !strings.Contains(r.stderr, "importing") || summaryCount(r.stdout, "duplicates") != 3 {
		t.Errorf("with a progress bar: stderr %q\n%s", r.stderr, r.stdout)
	}
	cli(t, "", "import", file, url, "--progress", "sometimes").want(t, exitUsage)

	cli(t, "", "import", filepath.Join(t.TempDir(), "missing.jsonl"), url).want(t, exitFailed)
	cli(t, "", "import", url).want(t, exitUsage)
	cli(t, "", "import", "-", "--max-in-flight", "0", url).want(t, exitUsage)
}

func TestImportManyLinesFast(t *testing.T) {
	srv, js := natsEnv(t)
	const n = 20_000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"type":"jti","jti":"bulk-%d","exp":1767225600,"reason":"compromised"}`+"\n", i)
	}
	r := cli(t, b.String(), "import", "-", "--nats-url", srv.URL(), "--max-in-flight", "512").want(t, exitOK)
	if summaryCount(r.stdout, "published") != n {
		t.Fatalf("summary:\n%s", r.stdout)
	}
	st, _ := js.Stream(context.Background(), event.DefaultStream)
	info, _ := st.Info(context.Background())
	if info.State.Msgs != n {
		t.Fatalf("stream holds %d, want %d", info.State.Msgs, n)
	}
}

// TestImportStopsOnOutage stops the server in the middle of an import: the import
// fails (exit 1) and counts as published only what the stream acknowledged.
func TestImportStopsOnOutage(t *testing.T) {
	srv, js := natsEnv(t)
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		code := run(ctx, []string{"import", "-", "--nats-url", srv.URL(), "--ack-timeout", "300ms", "--attempts", "2"}, pr, &out, &errb)
		_ = pr.Close() // unblock the writer once the import gave up
		done <- result{code, out.String(), errb.String()}
	}()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := fmt.Fprintf(pw, `{"type":"jti","jti":"o-%d","exp":1767225600}`+"\n", i); err != nil {
				return
			}
		}
	}
	write(0, 100)
	st, _ := js.Stream(context.Background(), event.DefaultStream)
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := st.Info(context.Background())
		if err == nil && info.State.Msgs == 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first 100 events never stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Stop()
	go func() {
		write(100, 100_000)
		pw.Close()
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("import did not give up")
	}
	r.want(t, exitFailed)
	// Events whose ack was lost with the server count as failed, not published, even
	// when the stream did store them: published may be below the 100 seen stored.
	if p := summaryCount(r.stdout, "published"); p >= 100_000 {
		t.Fatalf("published %d:\n%s", p, r.stdout)
	}
	if !strings.Contains(r.stdout, "stopped after line") && summaryCount(r.stdout, "failed") == 0 {
		t.Fatalf("outage not reported:\n%s", r.stdout)
	}
	// Restart: everything reported published is in the stream.
	srv.Restart()
	js2 := srv.CreateStream(stream.Settings{})
	st2, _ := js2.Stream(context.Background(), event.DefaultStream)
	info, err := st2.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p := summaryCount(r.stdout, "published"); int(info.State.Msgs) < p {
		t.Fatalf("reported %d published, the stream holds %d", p, info.State.Msgs)
	}
}

func TestReadEventsLineNumbers(t *testing.T) {
	in := "\n" + `{"type":"jti","jti":"a","exp":1}` + "\r\n  \n" + `nope` + "\n" + strings.Repeat("x", 3*maxLine) + "\n" + `{"type":"jti","jti":"b","exp":2}`
	type seen struct {
		line int
		jti  string
		err  string
	}
	var got []seen
	err := readEvents(strings.NewReader(in), nil, func(line int, ev event.Event, err error) bool {
		s := seen{line: line, jti: ev.JTI}
		if err != nil {
			s.err = event.Reason(err)
		}
		got = append(got, s)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []seen{{2, "a", ""}, {4, "", "malformed"}, {5, "", "too_large"}, {6, "b", ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// fn returning false stops the reading.
	calls := 0
	_ = readEvents(strings.NewReader(in), nil, func(int, event.Event, error) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("%d calls after stop", calls)
	}
}

// FuzzReadEvents feeds arbitrary input to the JSON-lines reader: it never panics, line
// numbers only grow and never pass the number of lines, and every event it accepts is
// valid and fits in a payload.
func FuzzReadEvents(f *testing.F) {
	for _, seed := range []string{
		goodLines,
		"",
		"\n\n\n",
		`{"type":"jti","jti":"a","exp":1767225600}`,
		`{"type":"cutoff","claim":"sid","value":"s","not_before":5}` + "\r\n" + `[1,2]`,
		`{"type":"jti","jti":"` + strings.Repeat("j", 300) + `","exp":1}`,
		strings.Repeat("y", maxLine+10) + "\n{}",
		"\xff\xfe\n{\"type\":\"jti\"}",
		`{"type":"jti","jti":"a","exp":1e400}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		last := 0
		err := readEvents(bytes.NewReader(data), nil, func(line int, ev event.Event, err error) bool {
			if line <= last || line > lines {
				t.Fatalf("line %d after %d (input has %d lines)", line, last, lines)
			}
			last = line
			if err == nil {
				if verr := ev.Validate(nil); verr != nil {
					t.Fatalf("accepted an invalid event %+v: %v", ev, verr)
				}
			}
			return true
		})
		if err != nil {
			t.Fatalf("reading from memory failed: %v", err)
		}
	})
}

// BenchmarkImport100k publishes 100,000 events with revokectl import to an embedded
// server with JetStream on file storage, and reports events/s:
//
//	go test -run '^$' -bench BenchmarkImport100k -benchtime 1x ./cmd/revokectl/
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, `{"type":"jti","jti":"bench-%08d","exp":1767225600,"iss":"https://idp.example.com","reason":"compromised"}`+"\n", i)
	}
	file := filepath.Join(b.TempDir(), "events.jsonl")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	var rate float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		srv := testsupport.StartNATS(b)
		srv.CreateStream(stream.Settings{})
		b.StartTimer()
		start := time.Now()
		r := cli(b, "", "import", file, "--nats-url", srv.URL())
		elapsed := time.Since(start)
		b.StopTimer()
		r.want(b, exitOK)
		if got := summaryCount(r.stdout, "published"); got != n {
			b.Fatalf("published %d:\n%s", got, r.stdout)
		}
		rate = n / elapsed.Seconds()
		srv.Stop()
		b.StartTimer()
	}
	b.ReportMetric(rate, "events/s")
}

func summaryCount(out, name string) int {
	m := regexp.MustCompile(`(?m)^  ` + name + ` +(\d+)`).FindStringSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

package sidecar_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/revoked-dev/revoked/internal/envoyreq"
)

// rawHTTP writes req on a fresh connection to addr and returns the status line (or the
// error that ended the exchange). It is how a hostile client talks: no client library
// to refuse what it sends.
func rawHTTP(addr string, write func(w *bufio.Writer)) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		write(w)
		_ = w.Flush()
	}()
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestHostileListeners sends hostile input to the real listeners of a running sidecar:
// HTTP ext_authz requests with a 1 MiB header or 10,000 headers (refused by the HTTP
// server's 64 KiB header limit with 431, before any token is read), bytes that are not
// HTTP or gRPC, a 5 MB gRPC CheckRequest (refused by gRPC's 4 MiB limit). The sidecar
// stays up and answers a valid request afterwards; its heap stays bounded.
func TestHostileListeners(t *testing.T) {
	e := newSecEnv(t)
	tok := e.issuer.Token("alice", time.Hour, nil)
	big := strings.Repeat("a", 1<<20)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	h0 := heap()
	for range 5 {
		cases := []struct {
			name  string
			write func(w *bufio.Writer)
			want  string // status line prefix; "" accepts a closed connection
		}{
			{"authorization header of 1 MiB", func(w *bufio.Writer) {
				fmt.Fprintf(w, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", big)
			}, "HTTP/1.1 431"},
			{"another header of 1 MiB", func(w *bufio.Writer) {
				fmt.Fprintf(w, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Big: %s\r\n\r\n", tok, big)
			}, "HTTP/1.1 431"},
			{"10,000 headers", func(w *bufio.Writer) {
				fmt.Fprintf(w, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n", tok)
				for i := range 10_000 {
					fmt.Fprintf(w, "X-H%d: v\r\n", i)
				}
				fmt.Fprint(w, "\r\n")
			}, "HTTP/1.1 431"},
			{"non-UTF-8 authorization", func(w *bufio.Writer) {
				fmt.Fprint(w, "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe.\xc0\xaf.\x80\r\n\r\n")
			}, "HTTP/1.1 401"},
			{"not HTTP", func(w *bufio.Writer) {
				fmt.Fprint(w, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n")
			}, "HTTP/1.1 400"},
		}
		for _, c := range cases {
			line, err := rawHTTP(e.sc.HTTPAddr(), c.write)
			if !strings.HasPrefix(line, c.want) {
				t.Fatalf("%s: %q, %v; want %s", c.name, line, err, c.want)
			}
		}
		// Bytes that are not gRPC on the gRPC port: the connection is dropped.
		if conn, err := net.DialTimeout("tcp", e.sc.GRPCAddr(), 2*time.Second); err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n" + strings.Repeat("\x00\xff", 1000)))
			_, _ = io.Copy(io.Discard, conn)
			conn.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := e.client.Check(ctx, envoyreq.Check(envoyreq.Request{Headers: map[string]string{"x-big": strings.Repeat("b", 5<<20)}}))
		cancel()
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("5 MB CheckRequest: %v, want ResourceExhausted", err)
		}
	}
	if r := e.reason(t, tok); r != "ok" {
		t.Fatalf("valid token after the hostile input: %s", r)
	}
	resp, err := http.Get("http://" + e.sc.HTTPAddr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("HTTP mode without a token: %d", resp.StatusCode)
	}
	if h1 := heap(); h1 > h0+32<<20 {
		t.Errorf("heap grew from %d MiB to %d MiB", h0>>20, h1>>20)
	}
	if strings.Contains(e.log.String(), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Error("a token reached the log")
	}
}

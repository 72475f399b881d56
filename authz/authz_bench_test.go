package authz

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/revoked-dev/revoked/blocklist"
	"github.com/revoked-dev/revoked/internal/devissuer"
	"github.com/revoked-dev/revoked/internal/envoyreq"
	"github.com/revoked-dev/revoked/jwtkeys"
)

// In-process decision benchmarks (opa-envoy-plugin's internal_bench_test.go style): the
// Authorizer over a 1M-entry blocklist, for a cached token, for a token seen for the
// first time (ES256), against bare golang-jwt verification of the same token, and
// against the naive baseline of issue 5 (no token cache, one map[string] behind one
// mutex). Nothing here fails on timing.

const benchBlocklist = 1_000_000

type benchEnv struct {
	iss    *devissuer.Issuer
	jwks   string // JWKS file path
	set    *blocklist.Set
	naive  *naiveBlocklist
	verify *Verifier
}

var (
	benchOnce   sync.Once
	benchShared *benchEnv
)

// newBenchEnv returns an ES256 issuer, its JWKS file, and a blocklist and a naive
// baseline list each holding 1M revoked jtis (built once per process), with keys and a
// verifier of b's own: the key watcher stops when b ends.
func newBenchEnv(b *testing.B) *benchEnv {
	benchOnce.Do(func() {
		iss, err := devissuer.New("ES256", testIss, testAud)
		if err != nil {
			b.Fatal(err)
		}
		dir, err := os.MkdirTemp("", "authz-bench")
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "jwks.json")
		jwks, _ := json.Marshal(map[string]any{"keys": []any{iss.JWK()}})
		if err := os.WriteFile(path, jwks, 0o600); err != nil {
			b.Fatal(err)
		}
		set := blocklist.New()
		naive := &naiveBlocklist{m: make(map[string]int64, benchBlocklist)}
		exp := time.Now().Add(24 * time.Hour).Unix()
		for i := range benchBlocklist {
			jti := "revoked-" + strconv.Itoa(i)
			set.AddJTI(set.JTIKey(testIss, jti), exp)
			naive.add(testIss, jti, exp)
		}
		benchShared = &benchEnv{iss: iss, jwks: path, set: set, naive: naive}
	})
	keys, err := jwtkeys.New(b.Context(), jwtkeys.Config{File: benchShared.jwks}, nil)
	if err != nil {
		b.Fatal(err)
	}
	vc := VerifierConfig{Issuers: []string{testIss}, Audiences: []string{testAud}, Leeway: 5 * time.Second,
		RequireJTI: true, CutoffClaims: []string{"sub", "sid", "client_id"}}
	e := *benchShared
	e.verify = NewVerifier(keys, vc)
	return &e
}

func (e *benchEnv) authorizer(cache int) *Authorizer {
	a := NewAuthorizer(e.verify, e.set, Options{CacheSize: cache, Metrics: NewMetrics(prometheus.NewRegistry())})
	a.SetGate(ReasonOK)
	return a
}

func (e *benchEnv) headers(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = "Bearer " + e.iss.Token("user-"+strconv.Itoa(i), time.Hour, nil)
	}
	return h
}

// naiveBlocklist is the baseline: the event's strings as the key of one map behind
// one mutex.
type naiveBlocklist struct {
	mu sync.Mutex
	m  map[string]int64
}

func (n *naiveBlocklist) add(iss, jti string, exp int64) {
	n.mu.Lock()
	n.m[iss+"\x00"+jti] = exp
	n.mu.Unlock()
}

func (n *naiveBlocklist) has(iss, jti string) bool {
	n.mu.Lock()
	_, ok := n.m[iss+"\x00"+jti]
	n.mu.Unlock()
	return ok
}

// naiveDecide is the baseline decision: verify every request, then look the jti up.
func (e *benchEnv) naiveDecide(header string, now time.Time) Reason {
	raw, r := BearerToken(header)
	if r != ReasonOK {
		return r
	}
	c, r := e.verify.Verify(raw, now)
	if r != ReasonOK {
		return r
	}
	if e.naive.has(c.Issuer, c.JTI) || e.naive.has("", c.JTI) {
		return ReasonRevokedJTI
	}
	return ReasonOK
}

// BenchmarkDecideCached is the hot path: a token already verified, a 1M-entry blocklist,
// through Check (metrics included), as the gRPC server calls it.
func BenchmarkDecideCached(b *testing.B) {
	e := newBenchEnv(b)
	a := e.authorizer(10_000)
	hs := e.headers(64)
	for _, h := range hs {
		if d := a.Check(h); !d.Allowed() {
			b.Fatal(d.Reason)
		}
	}
	b.Run("1M", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if d := a.Check(hs[i&63]); !d.Allowed() {
				b.Fatal(d.Reason)
			}
			i++
		}
	})
	b.Run("1M/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if d := a.Check(hs[i&63]); !d.Allowed() {
					b.Error(d.Reason)
					return
				}
				i++
			}
		})
	})
}

// BenchmarkDecideFirstSight is a token the cache has never seen: full ES256
// verification, claims, blocklist keys, cache insert, lookup. The pool is re-verified
// after a cache purge (outside the timer) each time it wraps.
func BenchmarkDecideFirstSight(b *testing.B) {
	e := newBenchEnv(b)
	a := e.authorizer(10_000)
	hs := e.headers(1024)
	b.Run("ES256", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(hs) {
				b.StopTimer()
				a.cache.Purge()
				i = 0
				b.StartTimer()
			}
			if d := a.Check(hs[i]); !d.Allowed() {
				b.Fatal(d.Reason)
			}
			i++
		}
	})
}

// BenchmarkBareJWT is golang-jwt/v5 alone verifying the same kind of token with the key
// in hand: the floor that first-sight verification is compared with.
func BenchmarkBareJWT(b *testing.B) {
	e := newBenchEnv(b)
	hs := e.headers(1024)
	pub := e.iss.PublicKey().(*ecdsa.PublicKey)
	p := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(testIss), jwt.WithAudience(testAud))
	key := func(*jwt.Token) (any, error) { return pub, nil }
	b.Run("ES256", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			var c jwt.RegisteredClaims
			if _, err := p.ParseWithClaims(hs[i&1023][len("Bearer "):], &c, key); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkNaiveDecide is the baseline: every request verified (no token cache), then
// a map[string] lookup behind one mutex, over 1M entries.
func BenchmarkNaiveDecide(b *testing.B) {
	e := newBenchEnv(b)
	hs := e.headers(64)
	now := time.Now()
	b.Run("1M", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if r := e.naiveDecide(hs[i&63], now); r != ReasonOK {
				b.Fatal(r)
			}
			i++
		}
	})
	b.Run("1M/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				e.naiveDecide(hs[i&63], now)
				i++
			}
		})
	})
}

// BenchmarkGRPCCheckInProcess is GRPCServer.Check without the network: header lookup in
// an Envoy-shaped request, decision, the preallocated response.
func BenchmarkGRPCCheckInProcess(b *testing.B) {
	e := newBenchEnv(b)
	a := e.authorizer(10_000)
	s := NewGRPCServer(a, "x-revoked-sub")
	hs := e.headers(64)
	reqs := make([]*authv3.CheckRequest, len(hs))
	for i, h := range hs {
		reqs[i] = envoyreq.Check(envoyreq.Bearer(h[len("Bearer "):]))
	}
	ctx := context.Background()
	b.Run("allow", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if r, _ := s.Check(ctx, reqs[i&63]); r.GetStatus().GetCode() != 0 {
				b.Fatal(r.GetStatus())
			}
			i++
		}
	})
	missing := envoyreq.Check(envoyreq.Request{})
	b.Run("deny-missing", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, _ := s.Check(ctx, missing); r.GetStatus().GetCode() == 0 {
				b.Fatal("allowed")
			}
		}
	})
}

// BenchmarkBearerToken is the header parse alone, for an ES256 token.
func BenchmarkBearerToken(b *testing.B) {
	e := newBenchEnv(b)
	h := e.headers(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, r := BearerToken(h); r != ReasonOK {
			b.Fatal(r)
		}
	}
}

// BenchmarkGRPC is GRPCServer.Check over a real gRPC connection in one process, on
// loopback TCP and on a Unix socket (Envoy's pipe address), from 32 parallel callers:
// the transport's share of a check; unix+codec adds GRPCServerOptions (partial decode). bench/loadgen measures the same across processes.
func BenchmarkGRPC(b *testing.B) {
	e := newBenchEnv(b)
	a := e.authorizer(10_000)
	hs := e.headers(64)
	reqs := make([]*authv3.CheckRequest, len(hs))
	for i, h := range hs {
		reqs[i] = envoyreq.Check(envoyreq.Bearer(h[len("Bearer "):]))
	}
	for _, name := range []string{"tcp", "unix", "unix+codec"} {
		b.Run(name, func(b *testing.B) {
			network, codec := strings.CutSuffix(name, "+codec")
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(b.TempDir(), "authz.sock")
			}
			lis, err := net.Listen(network, addr)
			if err != nil {
				b.Fatal(err)
			}
			var opts []grpc.ServerOption
			if codec {
				opts = GRPCServerOptions()
			}
			srv := grpc.NewServer(opts...)
			authv3.RegisterAuthorizationServer(srv, NewGRPCServer(a, "x-revoked-sub"))
			go func() { _ = srv.Serve(lis) }()
			defer srv.Stop()
			target := "passthrough:///" + lis.Addr().String()
			if network == "unix" {
				target = "unix://" + addr
			}
			conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := authv3.NewAuthorizationClient(conn)
			ctx := context.Background()
			for _, r := range reqs {
				if _, err := c.Check(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetParallelism(16) // 32 callers on 2 cores: throughput, as Envoy's many streams
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if r, err := c.Check(ctx, reqs[i&63]); err != nil || r.GetStatus().GetCode() != 0 {
						b.Error(err, r.GetStatus())
						return
					}
					i++
				}
			})
		})
	}
}

// BenchmarkCheckRequestDecode is the server's decoding of an Envoy-shaped CheckRequest:
// the whole message (standard codec) or only the authorization header (checkCodec).
func BenchmarkCheckRequestDecode(b *testing.B) {
	wire, err := proto.Marshal(envoyreq.Check(envoyreq.Bearer("aaa.bbb.ccc")))
	if err != nil {
		b.Fatal(err)
	}
	codec := checkCodec{std: encoding.GetCodecV2(grpcproto.Name)}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"full", codec.std}, {"authorization-only", codec}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var req authv3.CheckRequest
				if err := c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &req); err != nil {
					b.Fatal(err)
				}
				if h, _ := authorizationHeader(req.GetAttributes().GetRequest().GetHttp()); h != "Bearer aaa.bbb.ccc" {
					b.Fatal("header lost")
				}
			}
		})
	}
}

// FuzzCheckCodec checks that, whenever the standard decoder accepts a CheckRequest, the
// partial decoder does too and the authorization header read from both is the same.
// (A correctness check kept beside the benchmark that motivated the partial decoder.)
func FuzzCheckCodec(f *testing.F) {
	seeds := []*authv3.CheckRequest{
		envoyreq.Check(envoyreq.Bearer("aaa.bbb.ccc")),
		envoyreq.Check(envoyreq.Request{}),
		{},
	}
	hm := envoyreq.Check(envoyreq.Request{})
	hm.Attributes.Request.Http.Headers = nil
	hm.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "authorization", Value: "Bearer x.y.z"}, {Key: "x", Value: "y"},
		{Key: "authorization", RawValue: []byte("Bearer r.a.w")},
	}}
	seeds = append(seeds, hm)
	for _, s := range seeds {
		w, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(w)
		f.Add(append(append([]byte(nil), w...), w...)) // the message twice: merged
	}
	codec := checkCodec{std: encoding.GetCodecV2(grpcproto.Name)}
	f.Fuzz(func(t *testing.T, wire []byte) {
		var full authv3.CheckRequest
		if proto.Unmarshal(wire, &full) != nil {
			return
		}
		var part authv3.CheckRequest
		if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &part); err != nil {
			t.Fatalf("partial decoder refused what the standard one accepts: %v", err)
		}
		want, wantN := authorizationHeader(full.GetAttributes().GetRequest().GetHttp())
		got, gotN := authorizationHeader(part.GetAttributes().GetRequest().GetHttp())
		if got != want || gotN != wantN {
			t.Fatalf("authorization %q (%d headers), standard decoder %q (%d)", got, gotN, want, wantN)
		}
	})
}

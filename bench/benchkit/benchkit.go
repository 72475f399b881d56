// Package benchkit holds what the load tool and the benchmark drivers share: an ES256
// signing key kept in a file (so that a sidecar started separately can trust it),
// revocation events, child processes (nats-server, revoked), gRPC dialing and
// percentiles. It is benchmark tooling, not part of the sidecar.
package benchkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Issuer signs ES256 tokens with a key kept in a PEM file.
type Issuer struct {
	Iss, Aud, KID string
	key           *ecdsa.PrivateKey
}

// LoadOrCreateIssuer reads the ES256 key at keyPath, or creates it, and writes the
// matching JWKS to jwksPath (when not empty).
func LoadOrCreateIssuer(keyPath, jwksPath, iss, aud string) (*Issuer, error) {
	var key *ecdsa.PrivateKey
	if b, err := os.ReadFile(keyPath); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", keyPath)
		}
		if key, err = x509.ParseECPrivateKey(blk.Bytes); err != nil {
			return nil, fmt.Errorf("%s: %w", keyPath, err)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		der, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	} else {
		return nil, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	i := &Issuer{Iss: iss, Aud: aud, key: key, KID: "bench-" + hex.EncodeToString(der[len(der)-4:])}
	if jwksPath != "" {
		if err := os.WriteFile(jwksPath, i.JWKS(), 0o644); err != nil {
			return nil, err
		}
	}
	return i, nil
}

// JWKS is the public key set a sidecar needs to verify the issuer's tokens.
func (i *Issuer) JWKS() []byte {
	enc := base64.RawURLEncoding.EncodeToString
	pt, err := i.key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	x, y := pt[1:33], pt[33:65]
	b, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "EC", "crv": "P-256", "kid": i.KID, "alg": "ES256", "use": "sig", "x": enc(x), "y": enc(y),
	}}})
	return b
}

// Token signs a token for sub with the given jti, valid from now for ttl.
func (i *Issuer) Token(sub, jti string, ttl time.Duration) string {
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": i.Iss, "aud": i.Aud, "sub": sub, "jti": jti,
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	})
	t.Header["kid"] = i.KID
	s, err := t.SignedString(i.key)
	if err != nil {
		panic(err)
	}
	return s
}

// RandomID is 16 random bytes in hex.
func RandomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// JTIEvent is the payload of a jti revocation (CONTRACT section 2).
func JTIEvent(iss, jti string, exp int64) []byte {
	return fmt.Appendf(nil, `{"type":"jti","jti":%q,"exp":%d,"iss":%q,"reason":"logout","revoked_at":%d,"revoked_by":"bench","event_id":%q}`,
		jti, exp, iss, time.Now().Unix(), RandomID())
}

// Dial opens a gRPC client connection to host:port or unix:///path.
func Dial(addr string) (*grpc.ClientConn, error) {
	target := addr
	if !strings.HasPrefix(addr, "unix://") {
		target = "passthrough:///" + addr
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// WaitServing polls gRPC health (service "") until SERVING or ctx ends.
func WaitServing(ctx context.Context, conn *grpc.ClientConn) error {
	h := healthpb.NewHealthClient(conn)
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		r, err := h.Check(c, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not serving: %w (last: %v)", ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is a child process.
type Proc struct {
	Cmd  *exec.Cmd
	Name string
	done chan struct{}
}

// Start runs bin with args, its output appended to logPath.
func Start(name, logPath, bin string, args ...string) (*Proc, error) {
	return StartEnv(name, logPath, bin, nil, args...)
}

// StartEnv is Start with variables (KEY=value) added to this process's environment,
// such as GOGC for a sidecar.
func StartEnv(name, logPath, bin string, env []string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{Cmd: cmd, Name: name, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM, then SIGKILL after a second.
func (p *Proc) Stop() {
	if p == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// StartNATS runs nats-server with JetStream on a free port, its store in dir, and
// returns it with its client URL once it accepts connections. BENCH_NATS_ARGS adds
// flags (space-separated), such as "--profile 6060" to profile the server.
func StartNATS(bin, dir string) (*Proc, string, error) {
	port := FreePort()
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir + "/js"}, strings.Fields(os.Getenv("BENCH_NATS_ARGS"))...)
	p, err := Start("nats-server", dir+"/nats.log", bin, args...)
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return p, url, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Stop()
	return nil, "", errors.New("nats-server did not start; see " + dir + "/nats.log")
}

// Stats are latency percentiles.
type Stats struct {
	N                                   int
	Min, P50, P90, P99, P999, Max, Mean time.Duration
}

// Percentiles sorts d (in place) and returns its percentiles (nearest rank).
func Percentiles(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Stats{N: len(d), Min: d[0], P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: d[len(d)-1],
		Mean: sum / time.Duration(len(d))}
}

// String prints the percentiles in microseconds.
func (s Stats) String() string {
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }
	return fmt.Sprintf("n=%d p50=%sµs p90=%sµs p99=%sµs p99.9=%sµs max=%sµs mean=%sµs",
		s.N, us(s.P50), us(s.P90), us(s.P99), us(s.P999), us(s.Max), us(s.Mean))
}

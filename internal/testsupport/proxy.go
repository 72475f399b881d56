package testsupport

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a server (NATS), to cut one client off without
// touching the server or the other clients, or to lose what the server sends.
type Proxy struct {
	l        net.Listener
	upstream string
	cut      atomic.Bool  // refuse and close every connection
	drop     atomic.Bool  // read and discard what the server sends (lost acks)
	rate     atomic.Int64 // bytes a second the server's side is paced at; 0: no pacing
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// NewProxy starts a proxy to upstream on a random loopback port; Close stops it.
func NewProxy(upstream string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, upstream: upstream, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// StartProxy is NewProxy, closed when the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	p, err := NewProxy(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// URL is the proxy's address as a NATS URL.
func (p *Proxy) URL() string { return "nats://" + p.Addr() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.cut.Load() {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			return
		}
		p.wg.Add(2)
		go p.pipe(up, c, nil)
		go p.pipe(c, up, &p.drop)
	}
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies src to dst; while drop is set, what it reads is thrown away.
func (p *Proxy) pipe(dst, src net.Conn, drop *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	fromServer := drop != nil
	for {
		b := buf
		rate := p.rate.Load()
		if fromServer && rate > 0 {
			b = buf[:min(len(buf), max(int(rate/20), 1))] // paced in steps of 50 ms
		}
		n, err := src.Read(b)
		if n > 0 && (drop == nil || !drop.Load()) {
			if _, werr := dst.Write(b[:n]); werr != nil {
				return
			}
		}
		if fromServer && rate > 0 && n > 0 {
			time.Sleep(time.Duration(int64(n) * int64(time.Second) / rate))
		}
		if err != nil {
			return
		}
	}
}

// Partition closes every connection and refuses new ones until Heal.
func (p *Proxy) Partition() {
	p.cut.Store(true)
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

// Heal lets connections through again.
func (p *Proxy) Heal() { p.cut.Store(false) }

// Throttle paces what the server sends at bytesPerSecond (0: as fast as it comes), a
// slow or far link: a read of many megabytes then takes seconds while never stalling.
func (p *Proxy) Throttle(bytesPerSecond int64) { p.rate.Store(bytesPerSecond) }

// DropReplies makes the proxy read and discard what the server sends while on: the
// client's messages still arrive, their acks are lost.
func (p *Proxy) DropReplies(on bool) { p.drop.Store(on) }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.l.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

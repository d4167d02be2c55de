package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Blackhole is a local TCP listener that accepts connections and never
// answers: what a client sees of a server behind a partition that keeps
// connections open and forwards nothing. It returns its address; it is
// closed, with every connection, when the test ends.
func Blackhole(t testing.TB) string {
	t.Helper()
	return startProxy(t, "").Addr
}

// Proxy is a TCP proxy to a real server that a test can stall: while
// stalled it keeps every connection open, accepts new ones, and forwards
// nothing (what it reads is dropped, as a partition drops it); healed, it
// forwards again.
type Proxy struct {
	// Addr is where clients connect.
	Addr string

	target  string // "" for a blackhole
	ln      net.Listener
	stalled atomic.Bool
	mu      sync.Mutex
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

// NewProxy starts a proxy to target, forwarding; it is closed when the
// test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return startProxy(t, target)
}

// Stall stops forwarding.
func (p *Proxy) Stall() { p.stalled.Store(true) }

// Heal forwards again.
func (p *Proxy) Heal() { p.stalled.Store(false) }

func startProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	if target == "" {
		p.stalled.Store(true)
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			return
		}
		var up net.Conn
		if p.target != "" {
			if up, err = net.Dial("tcp", p.target); err != nil || !p.track(up) {
				c.Close()
				continue
			}
		}
		p.wg.Add(2)
		go p.pump(c, up)
		go p.pump(up, c)
	}
}

// track records c so that close closes it; false if closing already.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

// pump copies from src to dst while not stalled, dropping what it reads
// while stalled; with no dst (a blackhole) it only reads. It closes both
// when src ends.
func (p *Proxy) pump(src, dst net.Conn) {
	defer p.wg.Done()
	if src == nil {
		return
	}
	defer func() {
		src.Close()
		if dst != nil {
			dst.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !p.stalled.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops accepting, closes every connection and waits for the pumps.
func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

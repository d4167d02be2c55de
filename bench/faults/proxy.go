package main

import (
	"net"
	"sync"
	"time"
)

// proxy is a TCP forwarder the apps reach a server through (Redis, MariaDB
// or the broker), so the suite can cut the path while both ends keep
// running.
//
// retarget (failover) switches new connections to another address and
// closes the open ones: the apps see their connections drop, as they would
// when a primary dies.
//
// partition is the hardest stall, a network partition: every connection
// stays open and new ones are accepted (the kernel completes the
// handshake), but not a byte, and no FIN or RST, goes through in either
// direction. heal lets everything through again and the stalled
// connections resume where they stopped, as TCP connections resume after
// a real partition (their peers keep retransmitting for many minutes): the
// bytes a side wrote during the partition, and a close it made, arrive
// after the heal, in order. So a command an app gave up on during the
// partition may still reach the server after it, as it can in production.
// A connection accepted during the partition is dialled to the server at
// the heal.
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by close: stalled copies give up
	// healed is nil while the proxy forwards; during a partition it is
	// open, and heal closes it.
	healed chan struct{}
	wg     sync.WaitGroup // serve and the connections' goroutines
}

func newProxy(listen, target string) (*proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.handle(c) }()
	}
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pass waits while the proxy is partitioned; false once it is closed.
func (p *proxy) pass() bool {
	p.mu.Lock()
	h := p.healed
	p.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-p.done:
			return false
		}
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proxy) handle(client net.Conn) {
	if !p.track(client) {
		client.Close()
		return
	}
	defer p.untrack(client)
	// Accepted during a partition: the server hears of it at the heal.
	if !p.pass() {
		client.Close()
		return
	}
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(server)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client) }()
	go func() { defer wg.Done(); p.pipe(client, server) }()
	wg.Wait()
}

// pipe copies src to dst; each chunk, and the end of src (EOF or error),
// waits for the partition to heal before it is passed on.
func (p *proxy) pipe(dst, src net.Conn) {
	defer func() {
		dst.Close()
		src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.pass()
			return
		}
	}
}

// partition stops all forwarding until heal.
func (p *proxy) partition() {
	p.mu.Lock()
	if p.healed == nil {
		p.healed = make(chan struct{})
	}
	p.mu.Unlock()
}

// heal forwards again; the stalled connections resume.
func (p *proxy) heal() {
	p.mu.Lock()
	h := p.healed
	p.healed = nil
	p.mu.Unlock()
	if h != nil {
		close(h)
	}
}

// held counts the connections the proxy holds (both sides).
func (p *proxy) held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// retarget sends new connections to target and drops the current ones.
func (p *proxy) retarget(target string) {
	p.mu.Lock()
	p.target = target
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	p.mu.Unlock()
	p.ln.Close()
	p.retarget("")
	p.wg.Wait()
}

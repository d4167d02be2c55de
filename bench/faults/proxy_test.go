package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer echoes lines back and counts the connections it accepted and
// the ones whose client end it saw close.
type echoServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed chan net.Conn // a connection whose client end closed (EOF)
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, closed: make(chan net.Conn, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				_, _ = io.Copy(c, c)
				s.closed <- c
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func newTestProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p, err := newProxy("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

func dial(t *testing.T, p *proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func send(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
}

// expectLine reads one line within d.
func expectLine(t *testing.T, c net.Conn, r *bufio.Reader, want string, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := r.ReadString('\n')
	if err != nil || got != want+"\n" {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// expectSilence: nothing arrives within d (the partition passes nothing;
// an absence can only be observed for a while).
func expectSilence(t *testing.T, c net.Conn, r *bufio.Reader, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := r.ReadString('\n')
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || got != "" {
		t.Fatalf("during the partition read %q, %v; want nothing (a timeout)", got, err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
}

func TestProxyForwards(t *testing.T) {
	s := newEchoServer(t)
	p := newTestProxy(t, s.ln.Addr().String())
	c, r := dial(t, p)
	send(t, c, "hello")
	expectLine(t, c, r, "hello", 5*time.Second)
}

// A partition passes nothing either way, on open connections and on new
// ones (accepted, dialled to the server only at the heal), and no close;
// at the heal everything resumes in order.
func TestProxyPartitionStallsThenResumes(t *testing.T) {
	s := newEchoServer(t)
	p := newTestProxy(t, s.ln.Addr().String())
	c1, r1 := dial(t, p)
	send(t, c1, "before")
	expectLine(t, c1, r1, "before", 5*time.Second)
	c3, r3 := dial(t, p)
	send(t, c3, "x")
	expectLine(t, c3, r3, "x", 5*time.Second)

	p.partition()
	send(t, c1, "during")
	c2, r2 := dial(t, p) // accepted by the proxy's kernel, not forwarded
	send(t, c2, "new")
	c3.Close() // the close must not reach the server before the heal
	expectSilence(t, c1, r1, 300*time.Millisecond)
	expectSilence(t, c2, r2, 10*time.Millisecond)
	if n := s.accepted(); n != 2 {
		t.Fatalf("the server accepted %d connections during the partition, want 2 (those from before)", n)
	}
	select {
	case <-s.closed:
		t.Fatal("a client's close reached the server during the partition")
	default:
	}

	p.heal()
	expectLine(t, c1, r1, "during", 5*time.Second)
	expectLine(t, c2, r2, "new", 5*time.Second)
	if n := s.accepted(); n != 3 {
		t.Fatalf("the server accepted %d connections after the heal, want 3", n)
	}
	select {
	case <-s.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the close made during the partition never reached the server after the heal")
	}
	send(t, c1, "after")
	expectLine(t, c1, r1, "after", 5*time.Second)
}

// close ends a partitioned proxy: its stalled connections are closed and
// its goroutines return (close waits for them).
func TestProxyCloseWhilePartitioned(t *testing.T) {
	s := newEchoServer(t)
	p, err := newProxy("127.0.0.1:0", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c1, r1 := dial(t, p)
	send(t, c1, "a")
	expectLine(t, c1, r1, "a", 5*time.Second)
	p.partition()
	send(t, c1, "b")
	c2, _ := dial(t, p)
	send(t, c2, "c")
	done := make(chan struct{})
	go func() { p.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return while partitioned")
	}
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r1.ReadString('\n'); err == nil {
		t.Fatal("a connection of the closed proxy still delivered data")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a connection of the closed proxy was left open")
	}
}

func TestPct(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 200; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got := pct(ds, 50); got != 100*time.Millisecond {
		t.Errorf("p50 = %s, want 100ms", got)
	}
	if got := pct(ds, 99); got != 198*time.Millisecond {
		t.Errorf("p99 = %s, want 198ms", got)
	}
	if got := pct(ds[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %s, want 1ms", got)
	}
	if got := pct(nil, 50); got != -1 {
		t.Errorf("p50 of none = %s, want -1", got)
	}
	if got := statusCounts(map[string]int{"202": 3, "503": 9, "timeout": 3}); got != "503:9 202:3 timeout:3" {
		t.Errorf("statusCounts = %q", got)
	}
}

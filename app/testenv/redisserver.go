package testenv

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server of the test's own, on a free port of
// 127.0.0.1 with a data directory of its own: for what a test must not do
// to the shared server (change its configuration, restart it). It is
// stopped, by its pid, when the test ends.
type RedisServer struct {
	// Addr is where it listens.
	Addr string
	// Dir is its data directory (it keeps it across Restart).
	Dir string

	t    testing.TB
	bin  string
	port int
	cmd  *exec.Cmd
	exit chan struct{}
}

// PrivateRedis starts a redis-server of the test's own with args (after
// its port, bind address, data dir and no RDB snapshots) and waits until
// it answers PING. Without redis-server installed the test skips, or fails
// under CI=true.
func PrivateRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unreachable(t, "redis-server", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: t.TempDir(), t: t, bin: bin, port: port}
	t.Cleanup(r.Stop)
	r.start(args)
	c := r.Client()
	defer c.Close()
	r.waitFor("PING", func() error { return c.Ping(context.Background()).Err() })
	return r
}

// Client is a client of the server; the caller closes it.
func (r *RedisServer) Client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
}

// Restart stops the server (SIGKILL) and starts it again on the same port
// and data directory with args, and returns once it accepts connections,
// not waiting until it answers (it may be loading its data).
func (r *RedisServer) Restart(args ...string) {
	r.t.Helper()
	r.Stop()
	r.Start(args...)
}

// Start starts a stopped server again on the same port and data
// directory with args, and returns once it accepts connections, not
// waiting until it answers (it may be loading its data).
func (r *RedisServer) Start(args ...string) {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatalf("redis-server on %s: Start while it runs", r.Addr)
	}
	r.start(args)
	r.waitFor("a connection", func() error {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// Stop kills the server and waits for it; it does nothing if it is not
// running.
func (r *RedisServer) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exit
	r.cmd = nil
}

func (r *RedisServer) start(args []string) {
	r.t.Helper()
	cmd := exec.Command(r.bin, append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.Dir, "--save", "", "--daemonize", "no", "--protected-mode", "no"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.cmd, r.exit = cmd, make(chan struct{})
	exit := r.exit
	go func() { cmd.Wait(); close(exit) }()
}

// waitFor polls ok until it succeeds, for up to 20 s; the server exiting
// first fails the test.
func (r *RedisServer) waitFor(what string, ok func() error) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ok()
		if err == nil {
			return
		}
		select {
		case <-r.exit:
			r.t.Fatalf("redis-server on %s exited before %s: %v", r.Addr, what, r.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s: no %s within 20s: %v", r.Addr, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

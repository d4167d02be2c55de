package app_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"seckill/app"
	"seckill/app/apptest"
	"seckill/app/testenv"
)

// nowhere answers SECKILL_* lookups with backends nobody listens on, and
// records every lookup: a help request must not even read the config.
type nowhere struct {
	mu   sync.Mutex
	read []string
}

func (n *nowhere) getenv(k string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.read = append(n.read, k)
	return map[string]string{
		"SECKILL_REDIS_ADDR":    "127.0.0.1:1",
		"SECKILL_MYSQL_DSN":     "root@tcp(127.0.0.1:1)/nowhere",
		"SECKILL_KAFKA_BROKERS": "127.0.0.1:1",
		"SECKILL_HTTP_ADDR":     "127.0.0.1:0",
	}[k]
}

func (n *nowhere) lookups() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.read...)
}

// TestCLIHelp: every spelling of help prints the usage of the binary or of
// the command to stdout and succeeds, without reading the configuration
// (so without starting or connecting to anything).
func TestCLIHelp(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "usage: seckill [command]"},
		{[]string{"-h"}, "usage: seckill [command]"},
		{[]string{"-help"}, "usage: seckill [command]"},
		{[]string{"help"}, "usage: seckill [command]"},
		{[]string{"serve", "--help"}, "usage: seckill serve"},
		{[]string{"serve", "-h"}, "usage: seckill serve"},
		{[]string{"dev", "-h"}, "usage: seckill dev"},
		{[]string{"dev", "--help"}, "usage: seckill dev"},
		{[]string{"migrate", "--help"}, "usage: seckill migrate"},
		{[]string{"token", "-h"}, "usage: seckill token"},
		{[]string{"token", "--user", "1", "--help"}, "usage: seckill token"},
		{[]string{"help", "token"}, "usage: seckill token"},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		env := &nowhere{}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := app.Run(ctx, tc.args, env.getenv, &out)
		cancel()
		if err != nil {
			t.Errorf("%q: got error %v, want nil", tc.args, err)
		}
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%q: stdout %q, want it to contain %q", tc.args, out.String(), tc.want)
		}
		if got := env.lookups(); len(got) > 0 {
			t.Errorf("%q: read %v, want no configuration read for help", tc.args, got)
		}
	}
}

// TestCLIUsageErrors: unknown flags, unknown commands and extra arguments
// are usage errors (exit code 2), reported before the configuration is read.
func TestCLIUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--bogus"}, {"serve", "extra"}, {"--bogus"}, {"dev", "-x"}, {"dev", "extra"},
		{"migrate", "extra"}, {"migrate", "--dsn", "x"}, {"token", "--nope"}, {"token", "--user", "1", "extra"},
		{"token", "--user", "x"}, {"token", "--user", "0"}, {"token", "--user", "-3"}, {"token"},
		{"token", "--user", "1", "--ttl", "0s"}, {"token", "--user", "1", "--ttl", "-1m"}, {"token", "--user", "1", "--ttl", "soon"},
		{"bogus"}, {"help", "bogus"}, {"help", "serve", "extra"},
	} {
		var out bytes.Buffer
		env := &nowhere{}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := app.Run(ctx, args, env.getenv, &out)
		cancel()
		var usage *app.UsageError
		if !errors.As(err, &usage) || app.ExitCode(err) != 2 {
			t.Errorf("%q: got %v (exit %d), want a usage error (exit 2)", args, err, app.ExitCode(err))
			continue
		}
		if !strings.Contains(err.Error(), "usage: seckill") {
			t.Errorf("%q: error %q, want the usage in it", args, err)
		}
		if out.Len() > 0 {
			t.Errorf("%q: stdout %q, want nothing", args, out.String())
		}
		if got := env.lookups(); len(got) > 0 {
			t.Errorf("%q: read %v before refusing, want nothing read", args, got)
		}
	}
	if got := app.ExitCode(nil); got != 0 {
		t.Errorf("exit code of nil: got %d, want 0", got)
	}
	if got := app.ExitCode(errors.New("redis down")); got != 1 {
		t.Errorf("exit code of a runtime error: got %d, want 1", got)
	}
}

// TestCLIBinary runs the real binary: help goes to stdout with exit 0,
// usage errors to stderr with exit 2.
func TestCLIBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "seckill")
	build := exec.Command("go", "build", "-o", bin, "seckill")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tests := []struct {
		args           []string
		code           int
		stdout, stderr string // wanted substrings; "" = must be empty
	}{
		{[]string{"--help"}, 0, "usage: seckill [command]", ""},
		{[]string{"help"}, 0, "usage: seckill [command]", ""},
		{[]string{"serve", "--help"}, 0, "usage: seckill serve", ""},
		{[]string{"dev", "-h"}, 0, "usage: seckill dev", ""},
		{[]string{"migrate", "--help"}, 0, "usage: seckill migrate", ""},
		{[]string{"token", "-h"}, 0, "usage: seckill token", ""},
		{[]string{"serve", "--bogus"}, 2, "", "usage: seckill serve"},
		{[]string{"migrate", "now"}, 2, "", "usage: seckill migrate"},
		{[]string{"bogus"}, 2, "", "usage: seckill [command]"},
		{[]string{"token", "--user", "1"}, 1, "", "SECKILL_JWT_SECRET"},
	}
	for _, tc := range tests {
		cmd := exec.Command(bin, tc.args...)
		// Only what the case needs: no secret, backends nobody listens on.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SECKILL_MYSQL_DSN=root@tcp(127.0.0.1:1)/nowhere",
			"SECKILL_REDIS_ADDR=127.0.0.1:1", "SECKILL_KAFKA_BROKERS=127.0.0.1:1", "SECKILL_HTTP_ADDR=127.0.0.1:0"}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				cmd.Process.Kill() // it started something: help must not
			case <-done:
			}
		}()
		cmd.Wait()
		close(done)
		cancel()
		if got := cmd.ProcessState.ExitCode(); got != tc.code {
			t.Errorf("%q: exit code %d, want %d (stderr %q)", tc.args, got, tc.code, stderr.String())
		}
		for _, s := range []struct {
			name, got, want string
		}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
			if s.want == "" && s.got != "" {
				t.Errorf("%q: %s %q, want it empty", tc.args, s.name, s.got)
			} else if !strings.Contains(s.got, s.want) {
				t.Errorf("%q: %s %q, want it to contain %q", tc.args, s.name, s.got, s.want)
			}
		}
	}
}

// TestTokenChecksLikeServe: the token command refuses a secret serve would
// refuse, and a validity that is not positive.
func TestTokenChecksLikeServe(t *testing.T) {
	for _, tc := range []struct {
		secret string
		args   []string
	}{
		{"", []string{"token", "--user", "1"}},
		{"short", []string{"token", "--user", "1"}},
		{"0123456789abcde", []string{"token", "--user", "1"}}, // 15 bytes
	} {
		err := app.Run(context.Background(), tc.args, env(map[string]string{"SECKILL_JWT_SECRET": tc.secret}), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "SECKILL_JWT_SECRET") {
			t.Errorf("secret %q: got %v, want an error naming SECKILL_JWT_SECRET", tc.secret, err)
		}
		serve := app.Config{}
		serve.Auth.JWTSecret = tc.secret
		if serve.Validate() == nil {
			t.Errorf("secret %q: serve accepts it, token refuses it", tc.secret)
		}
	}
	for _, ttl := range []string{"0s", "-1m"} {
		var out bytes.Buffer
		err := app.Run(context.Background(), []string{"token", "--user", "1", "--ttl", ttl}, env(map[string]string{"SECKILL_JWT_SECRET": "0123456789abcdef"}), &out)
		if err == nil || out.Len() > 0 {
			t.Errorf("--ttl %s: got %v and %q, want an error and no token", ttl, err, out.String())
		}
	}
}

// TestMigrateNamesItsTarget: migrate says which server and database it
// migrated, never the password, and says so when the DSN is the built-in
// default rather than one the operator chose.
func TestMigrateNamesItsTarget(t *testing.T) {
	dsn, _ := testenv.MySQL(t)
	db := regexp.MustCompile(`/(seckill_t[0-9a-f]+)`).FindStringSubmatch(dsn)[1]
	var out bytes.Buffer
	if err := app.Run(context.Background(), []string{"migrate"}, env(map[string]string{"SECKILL_MYSQL_DSN": dsn}), &out); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if want := "127.0.0.1:3306/" + db; !strings.Contains(out.String(), want) {
		t.Errorf("migrate printed %q, want it to name %s", out.String(), want)
	}
	if strings.Contains(out.String(), "default") {
		t.Errorf("migrate printed %q for a chosen DSN, want no default warning", out.String())
	}

	// A password never shows, even when the server is unreachable.
	out.Reset()
	err := app.Run(context.Background(), []string{"migrate"}, env(map[string]string{"SECKILL_MYSQL_DSN": "root:hunter2@tcp(127.0.0.1:1)/far"}), &out)
	if err == nil {
		t.Fatal("migrate to a closed port: got nil error")
	}
	if !strings.Contains(out.String()+err.Error(), "127.0.0.1:1/far") || strings.Contains(out.String()+err.Error(), "hunter2") {
		t.Errorf("migrate said %q and %v, want 127.0.0.1:1/far named and no password", out.String(), err)
	}

	// The built-in default: named, and flagged as the default. The context is
	// already cancelled so nothing is created on the local server.
	out.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	app.Run(ctx, []string{"migrate"}, env(nil), &out)
	if s := out.String(); !strings.Contains(s, "127.0.0.1:3306/seckill") || !strings.Contains(s, "default") {
		t.Errorf("migrate with the default DSN printed %q, want 127.0.0.1:3306/seckill and that it is the default", s)
	}
}

// TestDevListensOnLoopback: with no SECKILL_HTTP_ADDR, dev serves on
// 127.0.0.1:8080 only and prints that address.
func TestDevListensOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the dev stack")
	}
	probe, err := net.Listen("tcp", ":8080")
	if err != nil {
		t.Skipf("port 8080 busy: %v", err)
	}
	probe.Close()
	var out apptest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, []string{"dev"}, env(nil), &out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("dev stopped with: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(out.String(), "metrics | grep") {
		select {
		case err := <-done:
			done <- err
			t.Skipf("dev did not start (port taken meanwhile?): %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	text := out.String()
	if !strings.Contains(text, "listening") || !strings.Contains(text, "addr=127.0.0.1:8080") {
		t.Errorf("dev log lacks addr=127.0.0.1:8080:\n%s", text)
	}
	if !strings.Contains(text, "running on http://127.0.0.1:8080") || strings.Contains(text, "[::]") {
		t.Errorf("dev printed another address than it listens on:\n%s", text)
	}
	// Not on every interface: another local address of the machine is refused.
	if ip := otherLocalIP(); ip != "" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second); err == nil {
			c.Close()
			t.Errorf("dev answers on %s:8080, want loopback only", ip)
		}
	}
}

// otherLocalIP is a non-loopback address of this machine, "" if none.
func otherLocalIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}

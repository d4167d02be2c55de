package app_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"seckill/app"
)

// standInPkgs are the import paths (prefixes) the embedded stand-ins pull
// in and a -tags nodev binary must not link.
var standInPkgs = []string{
	"github.com/dolthub/go-mysql-server",
	"github.com/alicebob/miniredis",
	"github.com/twmb/franz-go/pkg/kfake",
	"github.com/sirupsen/logrus",
}

// mainModule is the module path of go.mod, which is also the main package.
func mainModule(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1]
		}
	}
	t.Fatal("go.mod names no module")
	return ""
}

// linked returns which of standInPkgs the main package links with the
// given build flags (go list -deps, tests excluded).
func linked(t *testing.T, flags ...string) map[string]bool {
	t.Helper()
	args := append(append([]string{"list", "-deps"}, flags...), mainModule(t))
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	got := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, p := range standInPkgs {
			if pkg := sc.Text(); pkg == p || strings.HasPrefix(pkg, p+"/") {
				got[p] = true
			}
		}
	}
	return got
}

// TestLeanBinary: the production build (-tags nodev) links none of the
// embedded stand-ins, and the default build links all of them, so
// `go run . dev` keeps working.
func TestLeanBinary(t *testing.T) {
	lean := linked(t, "-tags", app.NoDevTag)
	full := linked(t)
	for _, p := range standInPkgs {
		if lean[p] {
			t.Errorf("-tags %s build links %s", app.NoDevTag, p)
		}
		if !full[p] {
			t.Errorf("default build does not link %s: dev mode lost a stand-in", p)
		}
	}
}

// TestNoDevRefusesEmbedded: a -tags nodev binary given "embedded"
// addresses, or run as seckill dev, stops at startup with an error that
// names the build tag and the settings, before connecting to anything.
func TestNoDevRefusesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "seckill")
	build := exec.Command("go", "build", "-tags", app.NoDevTag, "-o", bin, mainModule(t))
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %s: %v\n%s", app.NoDevTag, err, out)
	}
	base := []string{"PATH=" + os.Getenv("PATH"), "SECKILL_HTTP_ADDR=127.0.0.1:0",
		"SECKILL_ADMIN_TOKEN=admin-token-for-the-test", "SECKILL_JWT_SECRET=a-secret-of-at-least-16-bytes",
		"SECKILL_PURCHASE_KEY=a-purchase-key-of-16-bytes"}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want []string // substrings of stderr
		not  []string // settings that must not be named
	}{
		{"serve, redis embedded", []string{"serve"}, []string{"SECKILL_REDIS_ADDR=embedded",
			"SECKILL_MYSQL_DSN=root@tcp(127.0.0.1:1)/nowhere", "SECKILL_KAFKA_BROKERS=127.0.0.1:1"},
			[]string{"redis.addr (SECKILL_REDIS_ADDR) is \"embedded\""}, []string{"mysql.dsn", "kafka.brokers"}},
		{"serve, all embedded", []string{"serve"}, []string{"SECKILL_REDIS_ADDR=embedded",
			"SECKILL_MYSQL_DSN=embedded", "SECKILL_KAFKA_BROKERS=embedded"},
			[]string{"redis.addr (SECKILL_REDIS_ADDR), mysql.dsn (SECKILL_MYSQL_DSN), kafka.brokers (SECKILL_KAFKA_BROKERS) are"}, nil},
		{"dev", []string{"dev"}, nil,
			[]string{"redis.addr", "mysql.dsn", "kafka.brokers", "seckill dev uses them"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Env = append(append([]string(nil), base...), tc.env...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("still running after 20s: it started instead of refusing\nstdout:\n%s", stdout.Bytes())
			}
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit code %d (%v), want 1", code, err)
			}
			msg := stderr.String()
			want := append([]string{"built without the embedded stand-ins (-tags " + app.NoDevTag + ")",
				"at real servers", "default build"}, tc.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr %q lacks %q", msg, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(msg, n+" (") {
					t.Errorf("stderr %q names %s, which is not embedded", msg, n)
				}
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Errorf("it listened before refusing:\n%s", stdout.Bytes())
			}
		})
	}
}

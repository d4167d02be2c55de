package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// AppEnv is what one `seckill serve` is told through its environment.
type AppEnv struct {
	HTTPPort    int
	RedisAddr   string // SECKILL_REDIS_ADDR (a list for a cluster)
	RedisPrefix string
	MySQLPort   int // the private MariaDB, schema seckill
	KafkaPort   int
	AdminToken  string
	JWTSecret   string
	// PurchaseKey signs purchase tokens; "" derives one from JWTSecret
	// (every instance of a bench must share it).
	PurchaseKey string
	OrderTTL    string // SECKILL_ORDER_TTL, e.g. "6h"
}

// Environ is this process's environment without any SECKILL_ variable,
// then e's settings, rate limits high enough for any bench, log level info,
// then extra ("KEY=value"; a later one wins).
func (e AppEnv) Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SECKILL_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"SECKILL_HTTP_ADDR="+Addr(e.HTTPPort),
		"SECKILL_REDIS_ADDR="+e.RedisAddr,
		"SECKILL_REDIS_PREFIX="+e.RedisPrefix,
		"SECKILL_MYSQL_DSN="+DSN(e.MySQLPort, "seckill", "parseTime=true"),
		"SECKILL_KAFKA_BROKERS="+Addr(e.KafkaPort),
		"SECKILL_ADMIN_TOKEN="+e.AdminToken,
		"SECKILL_JWT_SECRET="+e.JWTSecret,
		"SECKILL_PURCHASE_KEY="+cmp.Or(e.PurchaseKey, "purchase-"+e.JWTSecret),
		"SECKILL_ORDER_TTL="+e.OrderTTL,
		"SECKILL_LIMIT_USER_RATE=100000",
		"SECKILL_LIMIT_GLOBAL_RATE=10000000",
		"SECKILL_LOG_LEVEL=info",
		// The buyers of the benches pay with the demo's pay button.
		"SECKILL_PAYMENTS_DEMO_PAY=true",
	)
	return append(env, extra...)
}

// ---------------------------------------------------------------- build

// Binaries are what Build makes.
type Binaries struct {
	Seckill string // `seckill` as production builds it (-tags nodev)
	Kafka   string // the kfake broker, ./bench/cmd/kafka
	// MySQLTemplate is the initialised MariaDB datadir (MariaDBTemplate).
	MySQLTemplate string
}

// BuildError is a failed go build of one package.
type BuildError struct {
	Pkg    string // "." or "./bench/cmd/kafka"
	Err    error
	Output []byte
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("go build %s: %v\n%s", e.Pkg, e.Err, e.Output)
}

// ModuleDir is the root of the seckill module the go command runs in.
func ModuleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the seckill module")
	}
	return filepath.Dir(mod), nil
}

// Build compiles seckill (without the embedded stand-ins) and the broker
// from the source tree src into root (a failure is a *BuildError), then
// prepares the MariaDB template in cache.
func Build(src, root, cache string) (Binaries, error) {
	b := Binaries{Seckill: filepath.Join(root, "seckill"), Kafka: filepath.Join(root, "kafka")}
	for _, t := range [][3]string{{b.Seckill, ".", "nodev"}, {b.Kafka, "./bench/cmd/kafka", ""}} {
		cmd := exec.Command("go", "build", "-tags", t[2], "-o", t[0], t[1])
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, &BuildError{Pkg: t[1], Err: err, Output: out}
		}
	}
	var err error
	b.MySQLTemplate, err = MariaDBTemplate(cache)
	return b, err
}

// ---------------------------------------------------------------- ready

// WaitReady polls GET url/readyz with hc every 50ms until it answers 200,
// or d passed.
func WaitReady(ctx context.Context, p *Proc, hc *http.Client, url string, d time.Duration) error {
	return WaitUp(ctx, p, d, 50*time.Millisecond, p.Name+" /readyz 200", func() error {
		st, err := Status(hc, url+"/readyz")
		if err == nil && st != 200 {
			err = fmt.Errorf("readyz %d", st)
		}
		return err
	})
}

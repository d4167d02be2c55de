package harness

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartFunc starts one named component of a tool: a Group's Start with
// the log path (and any crash report) the tool chooses for the name.
type StartFunc func(name string, env []string, bin string, args ...string) (*Proc, error)

// ---------------------------------------------------------------- Redis

// StartRedis starts redis-server as name on 127.0.0.1:port, in the
// foreground, with dir as its working dir and RDB snapshots off, then extra
// (persistence, replication, cluster flags), and waits up to 20s until it
// answers PING through rdb (a client of that address; the caller owns it).
// The Proc is returned whenever the process started, also with an error.
func StartRedis(ctx context.Context, start StartFunc, rdb *redis.Client, name string, port int, dir string, extra ...string) (*Proc, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--daemonize", "no", "--protected-mode", "no"}, extra...)
	p, err := start(name, nil, "redis-server", args...)
	if err != nil {
		return nil, err
	}
	return p, WaitUp(ctx, p, 20*time.Second, 50*time.Millisecond, name+" PING", func() error {
		return rdb.Ping(ctx).Err()
	})
}

// ---------------------------------------------------------------- MariaDB

// MariaDBTemplate returns a datadir initialised (mariadb-install-db, root
// without a password, no test db) once per MariaDB version and cached in
// cache across runs; each private server runs on a copy (CopyTemplate).
func MariaDBTemplate(cache string) (string, error) {
	out, err := exec.Command("mariadbd", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mariadbd --version: %w", err)
	}
	key := "unknown"
	if ver := strings.Fields(string(out)); len(ver) >= 3 {
		key = strings.Map(func(r rune) rune {
			if r == '.' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
				return r
			}
			return '_'
		}, ver[2])
	}
	tpl := filepath.Join(cache, "mysql-template-"+key)
	if _, err := os.Stat(filepath.Join(tpl, "mysql")); err == nil {
		return tpl, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cache, "init-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "data")
	cmd := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data,
		"--auth-root-authentication-method=normal", "--user="+CurrentUser(), "--skip-test-db",
		"--innodb-log-file-size=16M")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("mariadb-install-db: %w\n%s", err, b)
	}
	os.RemoveAll(tpl)
	if err := os.Rename(data, tpl); err != nil {
		return "", err
	}
	return tpl, nil
}

// CopyTemplate copies the datadir template tpl to dst (cp -a).
func CopyTemplate(tpl, dst string) error {
	if out, err := exec.Command("cp", "-a", tpl, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy mysql template: %v: %s", err, out)
	}
	return nil
}

// CurrentUser is the user mariadbd runs as: $USER, else root or the uid.
func CurrentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

// MariaDB is one private mariadbd.
type MariaDB struct {
	Dir     string // its socket and pid file go here
	DataDir string // a copy of the template
	Port    int
	// ErrorLog is mariadbd's --log-error.
	ErrorLog string
	// Extra flags (buffer pool, log file size, ...) come last.
	Extra []string
}

// Start starts mariadbd as "mysql", reachable on 127.0.0.1:Port only (no
// name resolution, 500 connections), and waits up to 60s until db (a
// handle of that server, e.g. DSN(m.Port, "", ...); the caller owns it)
// answers SELECT 1. The Proc is returned whenever the process started,
// also with an error.
func (m MariaDB) Start(ctx context.Context, start StartFunc, db *sql.DB) (*Proc, error) {
	args := append([]string{"--no-defaults", "--datadir=" + m.DataDir, "--port=" + strconv.Itoa(m.Port),
		"--socket=" + filepath.Join(m.Dir, "mysql.sock"), "--bind-address=127.0.0.1", "--skip-networking=0",
		"--user=" + CurrentUser(), "--pid-file=" + filepath.Join(m.Dir, "mysql.pid"),
		"--skip-name-resolve", "--max-connections=500", "--log-error=" + m.ErrorLog}, m.Extra...)
	p, err := start("mysql", nil, "mariadbd", args...)
	if err != nil {
		return nil, err
	}
	return p, WaitUp(ctx, p, 60*time.Second, 100*time.Millisecond, "mariadb SELECT 1", func() error {
		var one int
		if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return err
		}
		if one != 1 {
			return fmt.Errorf("SELECT 1 gave %d", one)
		}
		return nil
	})
}

// DSN is the go-sql-driver DSN of root on the private MariaDB at port,
// with schema ("" for none) and params (e.g. "parseTime=true").
func DSN(port int, schema, params string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?%s", port, schema, params)
}

// ---------------------------------------------------------------- Kafka

// StartKafka starts the kfake broker bin (built by Build) as "kafka" on
// 127.0.0.1:port with its data in dataDir, and waits up to 20s until it
// accepts connections. The Proc is returned whenever the process started,
// also with an error.
func StartKafka(ctx context.Context, start StartFunc, bin string, port int, dataDir string) (*Proc, error) {
	p, err := start("kafka", nil, bin, "-addr", Addr(port), "-data-dir", dataDir)
	if err != nil {
		return nil, err
	}
	return p, WaitUp(ctx, p, 20*time.Second, 50*time.Millisecond, "kafka listening", func() error {
		conn, err := net.DialTimeout("tcp", Addr(port), 500*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

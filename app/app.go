// Package app is the composition root: it loads the configuration, builds
// every part in dependency order, runs them and closes them in reverse.
package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"seckill/handler"
)

// Run runs the command in args (serve when none is given). It returns when
// the command is done or ctx is cancelled.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve":
		if err := cfg.Validate(); err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, nil)
	case "dev":
		return dev(ctx, cfg, getenv, stdout)
	case "migrate":
		return migrate(ctx, cfg, stdout)
	case "token":
		return token(cfg, args, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage: seckill [serve|dev|migrate|token --user ID [--ttl 1h]]
  serve    run the service (default)
  dev      run with embedded Redis, Kafka and MySQL and a demo item
  migrate  apply the MySQL schema
  token    print a user token signed with SECKILL_JWT_SECRET`

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func migrate(ctx context.Context, cfg Config, stdout io.Writer) error {
	db, err := openMySQL(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintln(stdout, "migrations applied")
	return nil
}

func token(cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.Int64("user", 0, "user id")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if *user <= 0 {
		return fmt.Errorf("token: --user must be a positive integer")
	}
	if cfg.Auth.JWTSecret == "" {
		return fmt.Errorf("token: SECKILL_JWT_SECRET is required")
	}
	tok, err := handler.SignUserToken([]byte(cfg.Auth.JWTSecret), *user, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// hostname names this instance in Kafka client ids and leases.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "seckill"
	}
	return h
}

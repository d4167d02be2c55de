// Package app is the composition root: it loads the configuration, builds
// every part in dependency order, runs them and closes them in reverse.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"seckill/handler"
)

// UsageError is a command line seckill cannot run: an unknown command or
// flag, a bad flag value, a stray argument. It carries the usage to show.
type UsageError struct {
	Err   error
	Usage string
}

func (e *UsageError) Error() string { return e.Err.Error() + "\n\n" + strings.TrimRight(e.Usage, "\n") }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode is the process exit code for an error of Run: 0 for none, 2 for
// a usage error (as flag-based tools do), 1 for anything else.
func ExitCode(err error) int {
	var usage *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return 2
	}
	return 1
}

// invocation is what a command runs with once its flags are parsed.
type invocation struct {
	getenv func(string) string
	stdout io.Writer
	usage  string // the command's usage, for usageError
}

// config loads the configuration. Commands call it only after their own
// checks, so a bad command line never reads (or acts on) any of it.
func (in invocation) config() (Config, error) { return LoadConfig(in.getenv) }

func (in invocation) usageError(err error) error { return &UsageError{Err: err, Usage: in.usage} }

// command is one subcommand of the binary.
type command struct {
	name     string
	synopsis string // what follows "seckill " in its usage line
	summary  string // one line for the binary's usage
	about    string // a paragraph for its own usage
	// flags declares the command's flags on fs and returns what runs it.
	flags func(fs *flag.FlagSet) func(ctx context.Context, in invocation) error
}

// commands are seckill's subcommands; serve is the default.
var commands = []command{
	{
		name: "serve", synopsis: "serve", summary: "run the service (the default command)",
		about: `Run the service: HTTP API, outbox relay, order writer, sweeper and
reconciler. Needs SECKILL_ADMIN_TOKEN and SECKILL_JWT_SECRET; applies the
MySQL schema at start. Configuration: see "seckill help".`,
		flags: noFlags(runServe),
	},
	{
		name: "dev", synopsis: "dev", summary: "run everything in one process, with a demo item and curl commands",
		about: `Run the whole system in one process: embedded Redis, Kafka and MySQL
unless SECKILL_REDIS_ADDR, SECKILL_KAFKA_BROKERS or SECKILL_MYSQL_DSN name
real ones, random secrets unless set, a demo item, and ready-to-paste curl
commands. Listens on 127.0.0.1:8080 unless SECKILL_HTTP_ADDR says otherwise.`,
		flags: noFlags(runDev),
	},
	{
		name: "migrate", synopsis: "migrate", summary: "apply the MySQL schema",
		about: `Apply the MySQL schema to mysql.dsn (SECKILL_MYSQL_DSN), creating the
database if needed, and print which server and database it migrated.
serve does the same at start.`,
		flags: noFlags(runMigrate),
	},
	{
		name: "token", synopsis: "token --user ID [--ttl DURATION]", summary: "print a user token signed with SECKILL_JWT_SECRET",
		about: `Print a user token (HS256 JWT, sub = the user id) signed with
SECKILL_JWT_SECRET, which must pass the same check as serve's (at least 16
bytes).`,
		flags: tokenFlags,
	},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// Run runs the command in args (serve when none is given). It returns when
// the command is done or ctx is cancelled. Help is printed to stdout; a
// *UsageError carries the usage for stderr (see ExitCode).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	name, args, implicit := splitCommand(args)
	if name == "help" {
		return help(args, stdout)
	}
	cmd, ok := lookup(name)
	if !ok {
		return &UsageError{Err: fmt.Errorf("unknown command %q", name), Usage: binaryUsage()}
	}
	fs, run := cmd.flagSet()
	usage := cmd.usage(fs)
	if implicit {
		usage = binaryUsage() // "seckill --help" is about the binary
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return &UsageError{Err: fmt.Errorf("%s: %w", cmd.name, err), Usage: usage}
	}
	return run(ctx, invocation{getenv: getenv, stdout: stdout, usage: usage})
}

// splitCommand finds the command name; implicit says it was not given
// (no arguments, or flags first) and serve is meant.
func splitCommand(args []string) (name string, rest []string, implicit bool) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "serve", args, true
	}
	return args[0], args[1:], false
}

// parseFlags parses args; no command takes positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// help prints the binary's usage, or one command's with "help COMMAND".
func help(args []string, stdout io.Writer) error {
	switch len(args) {
	case 0:
		fmt.Fprint(stdout, binaryUsage())
		return nil
	case 1:
		cmd, ok := lookup(args[0])
		if !ok {
			return &UsageError{Err: fmt.Errorf("help: unknown command %q", args[0]), Usage: binaryUsage()}
		}
		fs, _ := cmd.flagSet()
		fmt.Fprint(stdout, cmd.usage(fs))
		return nil
	}
	return &UsageError{Err: errors.New("help: at most one command"), Usage: binaryUsage()}
}

// flagSet makes the command's flag set. It never prints: Run decides where
// help and errors go.
func (c command) flagSet() (*flag.FlagSet, func(context.Context, invocation) error) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.flags(fs)
	return fs, run
}

func (c command) usage(fs *flag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: seckill %s\n\n%s\n", c.synopsis, c.about)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return b.String()
}

// binaryUsage lists the commands and every setting the environment overrides.
func binaryUsage() string {
	var b strings.Builder
	b.WriteString("usage: seckill [command] [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	b.WriteString("  help     this text; \"seckill help COMMAND\" or \"seckill COMMAND --help\" for one command\n")
	b.WriteString("\nConfiguration: configs/seckill.yaml (built in), then the file SECKILL_CONFIG\n" +
		"names layered over it, then these environment variables:\n")
	for _, o := range overrides {
		fmt.Fprintf(&b, "  %-28s %s\n", o.env, o.key)
	}
	b.WriteString("redis.addr, mysql.dsn and kafka.brokers may be \"embedded\" (an in-process stand-in).\n")
	return b.String()
}

// noFlags is the flags func of a command without flags.
func noFlags(run func(context.Context, invocation) error) func(*flag.FlagSet) func(context.Context, invocation) error {
	return func(*flag.FlagSet) func(context.Context, invocation) error { return run }
}

func runServe(ctx context.Context, in invocation) error {
	cfg, err := in.config()
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return serve(ctx, cfg, in.stdout, nil)
}

func runDev(ctx context.Context, in invocation) error {
	cfg, err := in.config()
	if err != nil {
		return err
	}
	return dev(ctx, cfg, in.getenv, in.stdout)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// runMigrate names its target before connecting, so an operator sees which
// server it went to even when that fails, and says so when the DSN is the
// built-in default rather than one they chose.
func runMigrate(ctx context.Context, in invocation) error {
	cfg, err := in.config()
	if err != nil {
		return err
	}
	if cfg.MySQL.DSN == Embedded {
		return errors.New(`migrate: mysql.dsn is "embedded", which lives only inside a running process; set SECKILL_MYSQL_DSN`)
	}
	target, err := mysqlTarget(cfg.MySQL.DSN)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if def, err := defaultConfig(); err == nil && cfg.MySQL.DSN == def.MySQL.DSN {
		fmt.Fprintf(in.stdout, "migrate: mysql.dsn is the built-in default (SECKILL_MYSQL_DSN or SECKILL_CONFIG chooses another): %s\n", target)
	}
	db, err := openMySQL(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", target, err)
	}
	defer db.Close()
	fmt.Fprintf(in.stdout, "migrations applied to %s\n", target)
	return nil
}

// mysqlTarget names the server and database of a DSN as host:port/db,
// without the user or password.
func mysqlTarget(dsn string) (string, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("mysql dsn: %w", err)
	}
	addr := mc.Addr
	if mc.Net != "tcp" {
		addr = mc.Net + "(" + mc.Addr + ")"
	}
	return addr + "/" + mc.DBName, nil
}

func tokenFlags(fs *flag.FlagSet) func(context.Context, invocation) error {
	user := fs.Int64("user", 0, "the user id, a positive integer (required)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid, positive")
	return func(_ context.Context, in invocation) error {
		switch {
		case *user == 0:
			return in.usageError(errors.New("token: --user is required"))
		case *user < 0:
			return in.usageError(fmt.Errorf("token: --user %d: want a positive integer", *user))
		}
		if *ttl <= 0 {
			return in.usageError(fmt.Errorf("token: --ttl %v: want a positive duration", *ttl))
		}
		cfg, err := in.config()
		if err != nil {
			return err
		}
		if err := checkJWTSecret(cfg.Auth.JWTSecret); err != nil {
			return fmt.Errorf("token: %w", err)
		}
		tok, err := handler.SignUserToken([]byte(cfg.Auth.JWTSecret), *user, *ttl)
		if err != nil {
			return fmt.Errorf("token: sign: %w", err)
		}
		fmt.Fprintln(in.stdout, tok)
		return nil
	}
}

// hostname names this instance in Kafka client ids and leases.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "seckill"
	}
	return h
}

package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// WaitFor polls cond every interval until it holds, d passed or ctx ends.
// The error after d carries the last error cond gave.
func WaitFor(ctx context.Context, d, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(d)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("%s: not within %s: %w", what, d, last)
			}
			return fmt.Errorf("%s: not within %s", what, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// WaitUp is WaitFor of check (up when it returns nil) on process p: while
// p has exited, the error says so and where its log is.
func WaitUp(ctx context.Context, p *Proc, d, interval time.Duration, what string, check func() error) error {
	return WaitFor(ctx, d, interval, what, func() (bool, error) {
		if !p.Alive() {
			return false, fmt.Errorf("%s exited: %v; see %s", p.Name, p.ExitErr(), p.LogPath)
		}
		err := check()
		return err == nil, err
	})
}

// Addr is the loopback address of port, where every private server
// listens.
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// PortsFree checks that nothing listens on any of the ports on 127.0.0.1;
// hint (e.g. "use -port-base") goes into the error.
func PortsFree(hint string, ports ...int) error {
	for _, port := range ports {
		ln, err := net.Listen("tcp", Addr(port))
		if err != nil {
			return fmt.Errorf("port %d is taken (%s): %w", port, hint, err)
		}
		if err := ln.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Mkdir creates the directory of the joined parts (and its parents) and
// returns its path.
func Mkdir(parts ...string) (string, error) {
	d := filepath.Join(parts...)
	return d, os.MkdirAll(d, 0o755)
}

// Workdir checks that every tool is on PATH and creates a fresh temp dir
// prefix* for a run's binaries, logs and data.
func Workdir(prefix string, tools ...string) (string, error) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found: %w", tool, err)
		}
	}
	return os.MkdirTemp("", prefix)
}

// Progress writes one line "[tag 15:04:05] ..." to stderr.
func Progress(tag, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s %s] %s\n", tag, time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// RandHex is n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PrintTable writes rows (the first one the header) as aligned columns,
// the first left-aligned and the others right-aligned, joined by " | ",
// with a rule under the header.
func PrintTable(w io.Writer, rows [][]string) {
	if len(rows) == 0 {
		return
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(row []string) {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString(" | ")
			}
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i], c)
			} else {
				fmt.Fprintf(&b, "%*s", width[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	fmt.Fprintln(w, strings.Join(sep, "-+-"))
	for _, row := range rows[1:] {
		line(row)
	}
}

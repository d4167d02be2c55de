// Package harness is what the black-box bench tools (bench/faults,
// bench/cmd/idlecost) share to run seckill on private servers: child
// processes in process groups of their own, signalled by pid and never by
// name; a private Redis, MariaDB (from a cached mariadb-install-db
// template) and kfake broker on ports the tool picks; seckill and the
// broker built from a source tree; free-port checks; polling with
// deadlines; small HTTP and output helpers.
package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Group is the set of child processes one tool started, so that it can
// kill what still runs when it ends. The zero value is not ready: set Tag.
type Group struct {
	// Tag names the tool in the lines Start writes into each log
	// ("=== <tag> <time>: starting ...").
	Tag string
	// OnCrash, if not nil, is called (on a goroutine of its own) when a
	// process exits without Expect having been called on it first.
	OnCrash func(p *Proc)

	mu   sync.Mutex
	live map[*Proc]struct{}
}

// Proc is one child process of a Group, in a process group of its own:
// every signal goes to that group (-pid), never to anything by name.
type Proc struct {
	Name    string
	LogPath string // stdout and stderr

	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	// expected is set before the tool stops the process on purpose, so
	// its exit is not a crash.
	expected atomic.Bool
}

// Start starts bin with args, its stdout and stderr appended to logPath;
// env nil inherits this process's environment. The process dies with this
// one (Pdeathsig).
func (g *Group) Start(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== %s %s: starting %s %s\n", g.Tag, time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	g.mu.Lock()
	if g.live == nil {
		g.live = map[*Proc]struct{}{}
	}
	g.live[p] = struct{}{}
	g.mu.Unlock()
	go func() {
		p.exitErr = cmd.Wait()
		fmt.Fprintf(f, "=== %s %s: %s exited: %v\n", g.Tag, time.Now().Format(time.RFC3339Nano), name, p.exitErr)
		f.Close()
		g.mu.Lock()
		delete(g.live, p)
		g.mu.Unlock()
		close(p.done)
		if !p.expected.Load() && g.OnCrash != nil {
			g.OnCrash(p)
		}
	}()
	return p, nil
}

// KillAll SIGKILLs (after a SIGCONT, in case it is stopped) every process
// group of g that still runs, and waits up to 5s for each.
func (g *Group) KillAll() {
	g.mu.Lock()
	ps := make([]*Proc, 0, len(g.live))
	for p := range g.live {
		ps = append(ps, p)
	}
	g.mu.Unlock()
	for _, p := range ps {
		p.expected.Store(true)
		_ = syscall.Kill(-p.Pid(), syscall.SIGCONT)
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	for _, p := range ps {
		p.Wait(5 * time.Second)
	}
}

// Main runs run with a context that SIGINT and SIGTERM cancel, then kills
// whatever of g still runs and exits with run's status.
func (g *Group) Main(run func(ctx context.Context) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx)
	stop()
	g.KillAll()
	os.Exit(code)
}

// Pid is the process id, which is also its process group id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitErr is what the process exited with; nil while it runs.
func (p *Proc) ExitErr() error {
	select {
	case <-p.done:
		return p.exitErr
	default:
		return nil
	}
}

// Alive tells whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Expect marks the coming exit as wanted: it is no crash.
func (p *Proc) Expect() { p.expected.Store(true) }

// Expected tells whether Expect was called (or the process was stopped
// through Kill9, Term or KillAll).
func (p *Proc) Expected() bool { return p.expected.Load() }

// Signal sends sig to the process group of p.
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("%s already exited", p.Name)
	}
	return syscall.Kill(-p.Pid(), sig)
}

// Wait waits up to d for the exit and tells whether it came.
func (p *Proc) Wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Kill9 SIGKILLs the group and waits (up to 10s) for the exit.
func (p *Proc) Kill9() {
	p.Expect()
	_ = p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
}

// Term SIGTERMs the group (after a SIGCONT: a stopped process cannot act
// on SIGTERM), and SIGKILLs it if it is not gone within d; the error says
// that it had to be killed. A process already gone is no error.
func (p *Proc) Term(d time.Duration) error {
	p.Expect()
	_ = p.Signal(syscall.SIGCONT)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return nil
	}
	if p.Wait(d) {
		return nil
	}
	_ = p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
	return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, d)
}

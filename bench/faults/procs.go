package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process the harness started, in a process group of its
// own: every signal goes to the group (-pid), never to anything by name.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	exitErr error
	// expected is set before the harness signals the process, so its exit
	// is not reported as a crash.
	expected atomic.Bool
}

var live struct {
	sync.Mutex
	m map[*proc]struct{}
}

// startProc starts bin with args, stdout and stderr appended to logPath.
// env nil inherits the harness's environment.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== harness %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, started: time.Now(), done: make(chan struct{})}
	live.Lock()
	if live.m == nil {
		live.m = map[*proc]struct{}{}
	}
	live.m[p] = struct{}{}
	live.Unlock()
	go func() {
		p.exitErr = cmd.Wait()
		fmt.Fprintf(f, "=== harness %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), name, p.exitErr)
		f.Close()
		live.Lock()
		delete(live.m, p)
		live.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the process group the harness created for p.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return fmt.Errorf("%s already exited", p.name)
	}
	return syscall.Kill(-p.pid(), sig)
}

func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill9 SIGKILLs the group and waits for the exit.
func (p *proc) kill9() {
	p.expected.Store(true)
	_ = p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// term SIGTERMs the group, and SIGKILLs it if it is not gone within d.
func (p *proc) term(d time.Duration) error {
	p.expected.Store(true)
	_ = p.signal(syscall.SIGCONT) // a stopped process cannot act on SIGTERM
	if err := p.signal(syscall.SIGTERM); err != nil {
		return nil
	}
	if p.wait(d) {
		return nil
	}
	_ = p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
	return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, d)
}

// killAll SIGKILLs every process group the harness started and still runs.
func killAll() {
	live.Lock()
	ps := make([]*proc, 0, len(live.m))
	for p := range live.m {
		ps = append(ps, p)
	}
	live.Unlock()
	for _, p := range ps {
		p.expected.Store(true)
		_ = syscall.Kill(-p.pid(), syscall.SIGCONT)
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	for _, p := range ps {
		p.wait(5 * time.Second)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 4*n {
			lines = append([]string(nil), lines[len(lines)-n:]...)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// grepLog returns up to max lines of path containing any of the words,
// and how many lines matched in all.
func grepLog(path string, max int, words ...string) ([]string, int) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	var out []string
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, w := range words {
			if strings.Contains(line, w) {
				n++
				if len(out) < max {
					out = append(out, line)
				}
				break
			}
		}
	}
	return out, n
}

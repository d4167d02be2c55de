package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process this tool started, in a process group of its
// own: every signal goes to that group (-pid), never to anything by name.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exitErr error
	// expected is set before the tool stops the process on purpose.
	expected atomic.Bool
}

var live struct {
	sync.Mutex
	m map[*proc]struct{}
}

// startProc starts bin with args, stdout and stderr appended to logPath.
// env nil inherits this process's environment.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== idlecost %s: starting %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	live.Lock()
	if live.m == nil {
		live.m = map[*proc]struct{}{}
	}
	live.m[p] = struct{}{}
	live.Unlock()
	go func() {
		p.exitErr = cmd.Wait()
		fmt.Fprintf(f, "=== idlecost %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), name, p.exitErr)
		f.Close()
		live.Lock()
		delete(live.m, p)
		live.Unlock()
		close(p.done)
		if !p.expected.Load() {
			progress("WARNING: %s (pid %d) exited by itself: %v; log %s", name, p.pid(), p.exitErr, logPath)
		}
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

// term SIGTERMs the group, and SIGKILLs it if it is not gone within d.
func (p *proc) term(d time.Duration) {
	p.expected.Store(true)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return
	}
	if p.wait(d) {
		return
	}
	_ = p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// killAll SIGKILLs every process group this tool started that still runs.
func killAll() {
	live.Lock()
	ps := make([]*proc, 0, len(live.m))
	for p := range live.m {
		ps = append(ps, p)
	}
	live.Unlock()
	for _, p := range ps {
		p.expected.Store(true)
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	for _, p := range ps {
		p.wait(5 * time.Second)
	}
}

// clkTck is USER_HZ, the unit of utime and stime in /proc/PID/stat.
var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// cpuSeconds is utime + stime of pid (all its threads) in seconds, or of
// its thread tid alone if one is given.
func cpuSeconds(pid int, tid ...int) (float64, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	if len(tid) > 0 {
		path = fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid[0])
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return (u + st) / clkTck, nil
}

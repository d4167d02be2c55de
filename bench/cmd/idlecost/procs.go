package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

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

package main

import (
	"bufio"
	"os"
	"strings"
)

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

package configs

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// nginxBin is the nginx binary, or the test skips (fails under CI=true).
func nginxBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx not installed under CI")
	}
	t.Skip("nginx not installed, skipping")
	return ""
}

// lbConfig is configs/lb/nginx.conf made to run here: its upstream servers
// replaced by upstream, its port by port, and its files under dir.
func lbConfig(t *testing.T, upstream string, port int, dir string) string {
	t.Helper()
	conf := readFile(t, lbConfigPath)
	servers := regexp.MustCompile(`(?m)^(\s*)server\s+app\d+:\d+([^;{]*);\n`)
	first := true
	conf = servers.ReplaceAllStringFunc(conf, func(line string) string {
		if !first {
			return ""
		}
		first = false
		m := servers.FindStringSubmatch(line)
		return m[1] + "server " + upstream + m[2] + ";\n"
	})
	for old, new := range map[string]string{
		"listen 8080":                fmt.Sprintf("listen 127.0.0.1:%d", port),
		"/var/cache/nginx/":          dir + "/cache/",
		"pid /tmp/nginx.pid":         "pid " + dir + "/nginx.pid",
		"worker_rlimit_nofile 65536": "worker_rlimit_nofile 1024",
		"worker_connections 16384":   "worker_connections 512",
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("nginx.conf: no %q to adapt for the test", old)
		}
		conf = strings.ReplaceAll(conf, old, new)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache"), 0o755); err != nil { // as /var/cache/nginx in the image
		t.Fatal(err)
	}
	p := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLBConfigValid: nginx -t accepts the load balancer's configuration.
func TestLBConfigValid(t *testing.T) {
	bin := nginxBin(t)
	dir := t.TempDir()
	conf := lbConfig(t, "127.0.0.1:1", 18080, dir)
	out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", conf, "-g", "user root;").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// TestLBCachesTheProductPage: the compose load balancer answers repeats of
// the product page itself, for as long as the instance's Cache-Control
// allows, and a crowd's concurrent first views reach the instance once;
// it never keeps an error, a token or a purchase answer.
func TestLBCachesTheProductPage(t *testing.T) {
	bin := nginxBin(t)
	var hits sync.Map // path+method -> *atomic.Int64
	count := func(key string) *atomic.Int64 {
		v, _ := hits.LoadOrStore(key, new(atomic.Int64))
		return v.(*atomic.Int64)
	}
	release := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count(r.Method + " " + r.URL.Path).Add(1)
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/items/7":
			<-release // the first view is slow: the crowd's views wait on it
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"7","remaining":5}`)
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/items/8":
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"code":"unavailable"}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"token":"t"}`)
		}
	}))
	defer app.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf := lbConfig(t, strings.TrimPrefix(app.URL, "http://"), port, dir)
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-g", "daemon off; user root;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r, err := http.Get(base + "/lb-healthz"); err == nil {
			r.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not answering 10s after start: %s", stderr.String())
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(method, path string, auth string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		r, err := client.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return 0, ""
		}
		r.Body.Close()
		return r.StatusCode, r.Header.Get("X-Cache-Status")
	}

	// A crowd's first views, together: one reaches the instance.
	const crowd = 20
	var wg sync.WaitGroup
	for i := range crowd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := get("GET", "/api/v1/items/7", fmt.Sprint("user", i)); code != 200 {
				t.Errorf("page view: got %d, want 200", code)
			}
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); count("GET /api/v1/items/7").Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no page view reached the instance within 10s")
		}
	}
	close(release)
	wg.Wait()
	// Repeats, with and without a bearer token: from the cache.
	for i := range 10 {
		if code, status := get("GET", "/api/v1/items/7", fmt.Sprint("other", i%2)); code != 200 || status != "HIT" {
			t.Errorf("repeat view: got %d %q, want 200 HIT", code, status)
		}
	}
	if n := count("GET /api/v1/items/7").Load(); n != 1 {
		t.Errorf("page views that reached the instance: got %d, want 1", n)
	}

	// Never kept: an error, a token, a purchase.
	for range 3 {
		if code, _ := get("GET", "/api/v1/items/8", ""); code != 503 {
			t.Errorf("unavailable page: got %d, want 503", code)
		}
		get("POST", "/api/v1/items/7/tokens", "u")
		get("POST", "/api/v1/items/7/purchase", "u")
	}
	for _, k := range []string{"GET /api/v1/items/8", "POST /api/v1/items/7/tokens", "POST /api/v1/items/7/purchase"} {
		if n := count(k).Load(); n != 3 {
			t.Errorf("%s reaching the instance: got %d of 3", k, n)
		}
	}
}

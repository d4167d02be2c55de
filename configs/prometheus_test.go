// This file is package configs_test, not configs: it boots the app, and
// seckill/app imports configs (the built-in seckill.yaml), so an in-package
// test importing app would be an import cycle.
package configs_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"seckill/app"
	"seckill/app/apptest"
	"seckill/handler"
)

// Paths, relative to this package's directory (where go test runs).
const (
	liveDashboardPath = "grafana/dashboards/seckill.json"
	liveAlertsPath    = "prometheus/alerts.yml"
)

// rangeWindow replaces $__rate_interval, $__interval and $__range. The test
// runs well under a minute and Prometheus scrapes every second, so a one
// minute window holds the whole sale and many samples of every series.
const rangeWindow = "1m"

// promQuery is one PromQL expression and where it comes from.
type promQuery struct {
	where string // panel title and refId, or alert name
	expr  string // as written in the file
}

// TestPrometheusDashboardQueries runs a real Prometheus against a running
// app through a short sale and evaluates every expression of the Grafana
// dashboard and of the alert rules: each must parse, and each dashboard
// query must return data. promtool check config/rules runs in TestPromtool.
func TestPrometheusDashboardQueries(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("prometheus not on PATH under CI: %v", err)
		}
		t.Skipf("prometheus not on PATH, skipping: %v", err)
	}
	panels, vars := loadDashboardQueries(t)
	alerts := loadAlertQueries(t)

	// The app, on real Redis and MySQL and an in-process Kafka.
	adminToken, jwtSecret := apptest.AdminToken, apptest.JWTSecret
	a := apptest.Start(t, map[string]string{
		"SECKILL_KAFKA_BROKERS":  app.Embedded,
		"SECKILL_ORDER_TTL":      "1m", // no expiry during the sale: exactly stock units sell
		"SECKILL_SWEEP_INTERVAL": "200ms",
		// Global admission stays wide open; the per-user bucket keeps the
		// shipped default so one greedy user below is rate limited.
		"SECKILL_LIMIT_USER_RATE": "5",
	})
	srv := a.Server

	prom := startPrometheus(t, promBin, srv.Addr)
	prom.waitUp(t, 15*time.Second)

	// The sale: stock sells out, one unit per user, plus the refusals and
	// bad requests the dashboard has panels for.
	base := "http://" + srv.Addr
	const stockUnits, buyers = 40, 60
	itemID := runSale(t, prom, base, adminToken, []byte(jwtSecret), stockUnits, buyers)
	saleEnd := time.Now()

	// Resolve the dashboard variables: $item to the item on sale, $route to
	// the dashboard's default. Their own queries are checked below.
	values := map[string]string{
		"item":  strconv.FormatInt(itemID, 10),
		"route": vars["route"].current,
	}
	if values["route"] == "" {
		t.Fatalf("variable route: got no default value, want one (the purchase route)")
	}
	queries := make([]promQuery, 0, len(panels))
	for _, q := range panels {
		expr, err := resolveVars(q.expr, values)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		queries = append(queries, promQuery{where: q.where, expr: expr})
	}

	// Poll until every dashboard query has data and every rule has been
	// evaluated without error: the relay, the consumer and the sweeper
	// (orders expire after 2s) need a few seconds and a few scrapes. The
	// last round is the one reported.
	var (
		empty, broken []string
		ruleProblems  []string
		varProblems   []string
	)
	deadline := saleEnd.Add(25 * time.Second)
	for round := 0; ; round++ {
		empty, broken, ruleProblems, varProblems = nil, nil, nil, nil
		for _, q := range queries {
			res, err := prom.query(q.expr)
			switch {
			case err != nil:
				broken = append(broken, fmt.Sprintf("%s: query %s: %v", q.where, q.expr, err))
			case !res.hasData():
				empty = append(empty, fmt.Sprintf("%s: query %s: got %s, want at least one series with a number", q.where, q.expr, res))
			}
		}
		for _, q := range alerts {
			if _, err := prom.query(q.expr); err != nil {
				broken = append(broken, fmt.Sprintf("%s: query %s: %v", q.where, q.expr, err))
			}
		}
		ruleProblems = prom.ruleProblems(t, alerts)
		for _, name := range []string{"item", "route"} {
			v, ok := vars[name]
			if !ok {
				varProblems = append(varProblems, fmt.Sprintf("variable %s: got missing from the dashboard, want present", name))
				continue
			}
			got, err := prom.labelValues(v.metric, v.label)
			if err != nil {
				varProblems = append(varProblems, fmt.Sprintf("variable %s query %s: %v", name, v.query, err))
			} else if !slices.Contains(got, values[name]) {
				varProblems = append(varProblems, fmt.Sprintf("variable %s query %s: got %v, want it to contain %q", name, v.query, got, values[name]))
			}
		}
		done := len(empty)+len(broken)+len(ruleProblems)+len(varProblems) == 0
		if done || time.Now().After(deadline) {
			t.Logf("round %d, %s after the sale: %d dashboard queries, %d alert exprs, %d empty, %d broken",
				round, time.Since(saleEnd).Round(time.Second), len(queries), len(alerts), len(empty), len(broken))
			break
		}
		time.Sleep(time.Second)
	}
	for _, list := range [][]string{broken, empty, ruleProblems, varProblems} {
		for _, p := range list {
			t.Error(p)
		}
	}
}

// ---- the sale ----

// runSale creates an item of stockUnits units and has buyers users buy one
// each (so it sells out), then adds a replayed purchase, a second purchase
// by one user, a rate-limited user and malformed requests. It returns the
// item id. prom is the Prometheus scraping the app.
func runSale(t *testing.T, prom *prometheus, base, adminToken string, secret []byte, stockUnits, buyers int) int64 {
	t.Helper()
	c := &apiClient{t: t, base: base, http: &http.Client{Timeout: 10 * time.Second}}

	var item struct {
		ID int64 `json:"id"`
	}
	if code := c.do("POST", "/api/v1/admin/items", adminToken, "",
		fmt.Sprintf(`{"name":"prom test","price_minor":1000,"currency":"EUR","stock":%d,"shards":4,"per_user_limit":1}`, stockUnits), &item); code != http.StatusCreated {
		t.Fatalf("create item: got status %d, want %d", code, http.StatusCreated)
	}
	path := fmt.Sprintf("/api/v1/items/%d", item.ID)

	userToken := func(user int64) string {
		tok, err := handler.SignUserToken(secret, user, time.Hour)
		if err != nil {
			t.Fatalf("sign user token: %v", err)
		}
		return tok
	}
	// buy takes a purchase token and buys with it as the idempotency key.
	buy := func(user int64) (code int, bearer, key string) {
		bearer = userToken(user)
		var tok struct {
			Token string `json:"token"`
		}
		if code := c.do("POST", path+"/tokens", bearer, "", "", &tok); code != http.StatusCreated {
			// An instance that saw the item sold out answers the token
			// request so, without Redis.
			if code != http.StatusConflict {
				t.Errorf("user %d purchase token: got status %d, want %d (or %d once sold out)", user, code, http.StatusCreated, http.StatusConflict)
			}
			return code, bearer, ""
		}
		return c.do("POST", path+"/purchase", bearer, tok.Token, "", nil), bearer, tok.Token
	}

	// Buyers in parallel, eight at a time.
	var (
		mu     sync.Mutex
		codes  = map[int]int{}
		wg     sync.WaitGroup
		inWave sync.WaitGroup // purchases of the current wave not answered yet
		next   = make(chan int64)
	)
	for range 8 {
		wg.Go(func() {
			for user := range next {
				code, _, _ := buy(user)
				mu.Lock()
				codes[code]++
				mu.Unlock()
				inWave.Done()
			}
		})
	}
	// Buyers come in four waves with a scrape between each two: a counter
	// series is born with its first scrape, so a sale that fits between two
	// scrapes shows no increase and rate() of the purchase route would be
	// 0. A wave ends when its purchases are answered; the next one starts
	// once Prometheus has scraped since.
	const waves = 4
	for u := range buyers {
		if u > 0 && u%((buyers+waves-1)/waves) == 0 {
			inWave.Wait()
			prom.waitScrapeAfter(t, time.Now(), 15*time.Second)
		}
		inWave.Add(1)
		next <- int64(u + 1)
	}
	close(next)
	wg.Wait()
	if got, want := codes[http.StatusAccepted], stockUnits; got != want {
		t.Errorf("accepted purchases: got %d (statuses %v), want %d", got, codes, want)
	}

	// Refusals and replays after the sell-out.
	extra := []struct {
		name       string
		do         func() int
		wantStatus int
	}{
		{"purchase by a buyer who did not get a unit", func() int { code, _, _ := buy(int64(buyers + 1)); return code }, http.StatusConflict},
		{"purchase without a user token", func() int { return c.do("POST", path+"/purchase", "", "k", "", nil) }, http.StatusUnauthorized},
		{"purchase of a malformed item id", func() int { return c.do("POST", "/api/v1/items/abc/purchase", userToken(1), "k", "", nil) }, http.StatusBadRequest},
		{"unknown item", func() int { return c.do("GET", "/api/v1/items/999999999", "", "", "", nil) }, http.StatusNotFound},
		{"unknown route", func() int { return c.do("GET", "/api/v1/nope", "", "", "", nil) }, http.StatusNotFound},
		{"create item with malformed JSON", func() int { return c.do("POST", "/api/v1/admin/items", adminToken, "", `{"name":`, nil) }, http.StatusBadRequest},
		{"create item without admin token", func() int { return c.do("POST", "/api/v1/admin/items", "", "", `{}`, nil) }, http.StatusUnauthorized},
		{"unsigned payment callback", func() int { return c.do("POST", "/api/v1/payments/callback", "", "", `{}`, nil) }, http.StatusUnauthorized},
	}
	for _, tt := range extra {
		if got := tt.do(); got < 400 || got >= 500 {
			t.Errorf("%s: got status %d, want a 4xx (typically %d)", tt.name, got, tt.wantStatus)
		}
	}

	// One greedy user asks for more purchase tokens than the per-user
	// bucket holds at an item still on sale (a sold-out item, or a
	// purchase with a token that is not ours, is refused before
	// admission): some must be rate limited (429), none may be a 5xx.
	var open struct {
		ID int64 `json:"id"`
	}
	if code := c.do("POST", "/api/v1/admin/items", adminToken, "", `{"name":"still on sale","price_minor":1000,"currency":"EUR","stock":100}`, &open); code != http.StatusCreated {
		t.Fatalf("create second item: got status %d, want %d", code, http.StatusCreated)
	}
	greedy := userToken(int64(buyers + 2))
	greedyCodes := map[int]int{}
	for range 40 {
		greedyCodes[c.do("POST", fmt.Sprintf("/api/v1/items/%d/tokens", open.ID), greedy, "", "", nil)]++
	}
	if greedyCodes[http.StatusTooManyRequests] == 0 {
		t.Errorf("greedy user statuses: got %v, want some %d", greedyCodes, http.StatusTooManyRequests)
	}
	payOne(t, c, open.ID, userToken(int64(buyers+3)))
	return item.ID
}

// payOne buys a unit of item for bearer and pays it (the demo route, on in
// the test app) once its order is stored: the revenue panel's series.
func payOne(t *testing.T, c *apiClient, item int64, bearer string) {
	t.Helper()
	var tok struct {
		Token string `json:"token"`
	}
	var pv struct {
		OrderID string `json:"order_id"`
	}
	if code := c.do("POST", fmt.Sprintf("/api/v1/items/%d/tokens", item), bearer, "", "", &tok); code != http.StatusCreated {
		t.Errorf("payer's token: got status %d, want %d", code, http.StatusCreated)
		return
	}
	if code := c.do("POST", fmt.Sprintf("/api/v1/items/%d/purchase", item), bearer, tok.Token, "", &pv); code != http.StatusAccepted {
		t.Errorf("payer's purchase: got status %d, want %d", code, http.StatusAccepted)
		return
	}
	// 409 order_pending until the writer stored the order.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code := c.do("POST", "/api/v1/orders/"+pv.OrderID+"/pay", bearer, "", "", nil)
		if code == http.StatusOK {
			return
		}
		if code != http.StatusConflict || time.Now().After(deadline) {
			t.Errorf("pay: got status %d, want %d once the order is stored", code, http.StatusOK)
			return
		}
	}
}

// apiClient calls the app's HTTP API.
type apiClient struct {
	t    *testing.T
	base string
	http *http.Client
}

// do sends a request and decodes a JSON answer into out (when not nil). It
// returns the status; a transport error fails the test and returns 0.
func (c *apiClient) do(method, path, bearer, idemKey, body string, out any) int {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return 0
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Errorf("%s %s: %v", method, path, err)
		return 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Errorf("%s %s: read body: %v", method, path, err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Errorf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// ---- Prometheus ----

// prometheus is a running Prometheus server and its HTTP API client.
type prometheus struct {
	base string
	http *http.Client
	log  *apptest.Buffer
}

// startPrometheus runs prometheus with a generated config that scrapes the
// app at target every second and loads the repository's alert rules. It is
// stopped when the test ends.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(liveAlertsPath)
	if err != nil {
		t.Fatalf("alerts path: %v", err)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: seckill
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, rules, target)
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}
	addr := freeAddr(t)
	p := &prometheus{base: "http://" + addr, http: &http.Client{Timeout: 5 * time.Second}, log: &apptest.Buffer{}}
	cmd := exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() && p.log.Len() > 0 {
			t.Logf("prometheus log:\n%s", p.log.String())
		}
	})

	// Ready means the config and the rule file loaded.
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited before ready: %v\n%s", err, p.log.String())
		default:
		}
		if resp, err := p.http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus ready: got not ready after 15s, want ready\n%s", p.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitUp waits until Prometheus has scraped the app successfully.
func (p *prometheus) waitUp(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := p.query(`up{job="seckill"} == 1`)
		if err == nil && res.hasData() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape of the app: got %v (err %v) after %s, want up == 1", res, err, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitScrapeAfter waits until Prometheus has scraped the app at a time
// after since (a scrape's timestamp is when it began), so every counter
// change before since is in a sample.
func (p *prometheus) waitScrapeAfter(t *testing.T, since time.Time, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := p.query(`timestamp(up{job="seckill"})`)
		var v []sample
		if err == nil && res.ResultType == "vector" && json.Unmarshal(res.Result, &v) == nil && len(v) > 0 {
			if s, ok := v[0].Value[1].(string); ok {
				if ts, err := strconv.ParseFloat(s, 64); err == nil && ts*1000 > float64(since.UnixMilli()) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape of the app after %s: got %v (err %v) after %s, want a later one", since.Format(time.RFC3339Nano), res, err, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apiResponse is the envelope of Prometheus' HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// get calls an API path and returns its data, or an error naming the
// failure Prometheus reported (a parse error is bad_data).
func (p *prometheus) get(path string, params url.Values) (json.RawMessage, error) {
	resp, err := p.http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r apiResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode %s answer (HTTP %d): %w", path, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("got status %s (%s: %s), want success", r.Status, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// queryResult is the data of an instant query.
type queryResult struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// sample is one series of a vector result.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// hasData reports whether the result holds at least one number: a vector
// or scalar whose values are all NaN (histogram_quantile over no
// observations, 0/0) draws nothing in Grafana.
func (r queryResult) hasData() bool {
	switch r.ResultType {
	case "vector":
		var v []sample
		if json.Unmarshal(r.Result, &v) != nil {
			return false
		}
		for _, s := range v {
			if isNumber(s.Value[1]) {
				return true
			}
		}
	case "scalar":
		var s [2]any
		return json.Unmarshal(r.Result, &s) == nil && isNumber(s[1])
	}
	return false
}

func isNumber(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && !math.IsNaN(f)
}

func (r queryResult) String() string {
	if len(r.Result) > 300 {
		return r.ResultType + " " + string(r.Result[:300]) + "..."
	}
	return r.ResultType + " " + string(r.Result)
}

// query evaluates expr at the current time.
func (p *prometheus) query(expr string) (queryResult, error) {
	var r queryResult
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("decode query result: %w", err)
	}
	return r, nil
}

// labelValues answers Grafana's label_values(metric, label) over the last
// five minutes.
func (p *prometheus) labelValues(metric, label string) ([]string, error) {
	data, err := p.get("/api/v1/label/"+label+"/values", url.Values{
		"match[]": {metric},
		"start":   {strconv.FormatInt(time.Now().Add(-5*time.Minute).Unix(), 10)},
	})
	if err != nil {
		return nil, err
	}
	var out []string
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("decode label values: %w", err)
	}
	return out, nil
}

// ruleProblems checks that Prometheus loaded every alert of alerts.yml and
// evaluated each without error.
func (p *prometheus) ruleProblems(t *testing.T, alerts []promQuery) []string {
	t.Helper()
	data, err := p.get("/api/v1/rules", url.Values{"type": {"alert"}})
	if err != nil {
		return []string{fmt.Sprintf("rules API: %v", err)}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &rules); err != nil {
		return []string{fmt.Sprintf("decode rules: %v", err)}
	}
	health := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			health[r.Name] = r.Health
			if r.LastError != "" {
				health[r.Name] += ": " + r.LastError
			}
		}
	}
	var out []string
	for _, a := range alerts {
		if got := health[strings.TrimPrefix(a.where, "alert ")]; got != "ok" {
			out = append(out, fmt.Sprintf("%s health: got %q, want \"ok\"", a.where, got))
		}
	}
	return out
}

// ---- the files ----

// variable is a dashboard variable of the form label_values(metric, label).
type variable struct {
	query, metric, label string
	current              string // the default value, "" for All
}

var labelValuesRe = regexp.MustCompile(`^label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)

// loadDashboardQueries returns every target expr of the dashboard (rows'
// nested panels too) and its query variables.
func loadDashboardQueries(t *testing.T) ([]promQuery, map[string]variable) {
	t.Helper()
	b, err := os.ReadFile(liveDashboardPath)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
			Hide  bool   `json:"hide"`
		} `json:"targets"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name    string          `json:"name"`
				Type    string          `json:"type"`
				Query   json.RawMessage `json:"query"`
				Current struct {
					Value any `json:"value"`
				} `json:"current"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("parse dashboard: %v", err)
	}
	var out []promQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Hide || strings.TrimSpace(tg.Expr) == "" {
					continue
				}
				out = append(out, promQuery{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		t.Fatalf("dashboard queries: got none, want some")
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			json.Unmarshal(v.Query, &q.Query) // older dashboards: a plain string
		}
		m := labelValuesRe.FindStringSubmatch(strings.TrimSpace(q.Query))
		if m == nil {
			t.Errorf("variable %s query: got %q, want label_values(metric, label)", v.Name, q.Query)
			continue
		}
		cur := ""
		switch c := v.Current.Value.(type) {
		case string:
			cur = c
		case []any:
			if len(c) == 1 {
				cur = fmt.Sprint(c[0])
			}
		}
		if cur == "$__all" {
			cur = ""
		}
		vars[v.Name] = variable{query: q.Query, metric: m[1], label: m[2], current: cur}
	}
	return out, vars
}

// loadAlertQueries returns the expr of every rule of alerts.yml.
func loadAlertQueries(t *testing.T) []promQuery {
	t.Helper()
	b, err := os.ReadFile(liveAlertsPath)
	if err != nil {
		t.Fatalf("read alerts: %v", err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("parse alerts: %v", err)
	}
	var out []promQuery
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue // recording rules are covered by promtool check rules
			}
			out = append(out, promQuery{where: "alert " + r.Alert, expr: r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("alert rules: got none, want some")
	}
	return out
}

// ---- Grafana variables ----

var varRe = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\[\[([A-Za-z0-9_]+)\]\]|\$([A-Za-z0-9_]+)`)

// resolveVars substitutes Grafana variables as Grafana does for a
// Prometheus data source: the interval variables by rangeWindow, a
// dashboard variable by its value escaped for a regex matcher.
func resolveVars(expr string, values map[string]string) (string, error) {
	var unknown []string
	out := varRe.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRe.FindStringSubmatch(m)
		name := sm[1] + sm[2] + sm[3]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return rangeWindow
		case "__interval_ms", "__range_ms":
			d, _ := time.ParseDuration(rangeWindow)
			return strconv.FormatInt(d.Milliseconds(), 10)
		case "__range_s":
			d, _ := time.ParseDuration(rangeWindow)
			return strconv.FormatInt(int64(d.Seconds()), 10)
		}
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return promRegexEscape(v)
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("expr %q: got unknown variables %v, want only dashboard or interval variables", expr, unknown)
	}
	return out, nil
}

// promRegexEscape escapes regex metacharacters the way Grafana's
// Prometheus data source does, doubled for a PromQL string literal.
func promRegexEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\$^*{}[]'+?.()|`, r) {
			b.WriteString(`\\`)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestPrometheusResolveVars(t *testing.T) {
	vals := map[string]string{"item": "42", "route": "/api/v1/items/:id/purchase", "dot": "a.b"}
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{`rate(x{item=~"$item"}[$__rate_interval])`, `rate(x{item=~"42"}[1m])`, false},
		{`x{route=~"${route}"}`, `x{route=~"/api/v1/items/:id/purchase"}`, false},
		{`x{route=~"${route:regex}"}[$__interval]`, `x{route=~"/api/v1/items/:id/purchase"}[1m]`, false},
		{`x{a=~"$dot"}`, `x{a=~"a\\.b"}`, false},
		{`x{a=~"[[item]]"}`, `x{a=~"42"}`, false},
		{`x{a=~"$nope"}`, "", true},
		{`sum(x)`, `sum(x)`, false},
	}
	for _, tt := range tests {
		got, err := resolveVars(tt.in, vals)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("resolveVars(%q): got %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

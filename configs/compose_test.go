package configs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"
)

// Paths, relative to this package's directory (where go test runs).
const (
	composePath     = "../docker-compose.yml"
	dockerfilePath  = "../Dockerfile"
	dockerignore    = "../.dockerignore"
	appConfigPath   = "seckill.yaml"
	promConfigPath  = "prometheus/prometheus.yml"
	promAlertsPath  = "prometheus/alerts.yml"
	lbConfigPath    = "lb/nginx.conf"
	datasourcePath  = "grafana/provisioning/datasources/prometheus.yml"
	dashProvPath    = "grafana/provisioning/dashboards/dashboards.yml"
	dashboardPath   = "grafana/dashboards/seckill.json"
	seckillImageCmd = "serve"
)

// metricKind tells which series names a metric family exposes.
type metricKind int

const (
	counter metricKind = iota
	gauge
	histogram
)

// metricDef is one metric family the app exports, with its labels.
type metricDef struct {
	kind   metricKind
	labels []string
}

// exported is the app's metric contract: every name a dashboard or alert may
// query. Keep it in step with the app's metrics.
var exported = map[string]metricDef{
	"seckill_http_requests_total":              {counter, []string{"route", "method", "status"}},
	"seckill_http_request_duration_seconds":    {histogram, []string{"route", "method"}},
	"seckill_purchases_total":                  {counter, []string{"outcome"}},
	"seckill_stock_remaining":                  {gauge, []string{"item"}},
	"seckill_stock_shards_missing":             {gauge, []string{"item"}},
	"seckill_limiter_rejections_total":         {counter, []string{"reason"}},
	"seckill_inflight_purchases":               {gauge, nil},
	"seckill_inflight_limit":                   {gauge, nil},
	"seckill_relay_published_total":            {counter, nil},
	"seckill_relay_publish_duration_seconds":   {histogram, nil},
	"seckill_relay_errors_total":               {counter, nil},
	"seckill_outbox_backlog":                   {gauge, []string{"item"}},
	"seckill_outbox_broken_entries_total":      {counter, nil},
	"seckill_consumer_batch_size":              {histogram, nil},
	"seckill_consumer_commit_duration_seconds": {histogram, nil},
	"seckill_consumer_orders_total":            {counter, nil},
	"seckill_consumer_lag":                     {gauge, []string{"partition"}},
	"seckill_dlq_messages_total":               {counter, []string{"reason"}},
	"seckill_db_guard_refusals_total":          {counter, nil},
	"seckill_order_id_collisions_total":        {counter, nil},
	"seckill_stock_drift":                      {gauge, []string{"item"}},
	"seckill_oversold":                         {gauge, []string{"item"}},
	"seckill_orders_lost_total":                {counter, nil},
	"seckill_sweeper_cancelled_total":          {counter, nil},
	"seckill_stock_returned_total":             {counter, nil},
	"seckill_breaker_state":                    {gauge, []string{"dependency"}},
	"seckill_breaker_transitions_total":        {counter, []string{"dependency", "to"}},
	// Payments (handler/payments.go).
	"seckill_payment_callbacks_total": {counter, []string{"result"}},
	"seckill_refunds_required_total":  {counter, nil},
	"seckill_revenue_minor_total":     {counter, []string{"currency"}},
	// The operator's controls.
	"seckill_items_paused": {gauge, nil},
}

// builtin are series Prometheus itself adds to every scrape.
var builtin = map[string]metricDef{
	"up": {gauge, nil},
}

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"instance", "job"}

// ---- compose model ----

type composeFile struct {
	Name     string             `yaml:"name"`
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image           string       `yaml:"image"`
	Build           any          `yaml:"build"`
	Command         any          `yaml:"command"`
	Entrypoint      any          `yaml:"entrypoint"`
	Environment     any          `yaml:"environment"`
	DependsOn       any          `yaml:"depends_on"`
	Healthcheck     *healthcheck `yaml:"healthcheck"`
	Profiles        []string     `yaml:"profiles"`
	Volumes         []any        `yaml:"volumes"`
	Restart         string       `yaml:"restart"`
	StopGracePeriod string       `yaml:"stop_grace_period"`
	Ports           []string     `yaml:"ports"`
}

type healthcheck struct {
	Test    any  `yaml:"test"`
	Disable bool `yaml:"disable"`
}

// env returns the service's environment, whichever form the file uses.
func (s service) env() map[string]string {
	out := map[string]string{}
	switch e := s.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	}
	return out
}

// words returns a command, entrypoint or healthcheck test as a list of words.
func words(v any) []string {
	switch c := v.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		var out []string
		for _, w := range c {
			out = append(out, fmt.Sprint(w))
		}
		return out
	}
	return nil
}

// deps returns depends_on as service -> condition, whichever form is used.
func (s service) deps() map[string]string {
	out := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, name := range d {
			out[fmt.Sprint(name)] = "service_started"
		}
	case map[string]any:
		for name, v := range d {
			cond := "service_started"
			if m, ok := v.(map[string]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[name] = cond
		}
	}
	return out
}

// binds returns the service's bind mounts as host source -> container target.
func (s service) binds() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		var src, dst string
		switch m := v.(type) {
		case string:
			parts := strings.Split(m, ":")
			if len(parts) < 2 {
				continue
			}
			src, dst = parts[0], parts[1]
		case map[string]any:
			if m["type"] != "bind" {
				continue
			}
			src, dst = fmt.Sprint(m["source"]), fmt.Sprint(m["target"])
		}
		if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
			out[src] = dst
		}
	}
	return out
}

// usesSeckillImage reports whether the service runs the image built from
// the repository's Dockerfile.
func (s service) usesSeckillImage() bool {
	return s.Build != nil
}

func (s service) isAppInstance() bool {
	if !s.usesSeckillImage() {
		return false
	}
	cmd := words(s.Command)
	return len(cmd) == 0 || cmd[0] == seckillImageCmd
}

// composeSecrets are the variables compose requires (${VAR:?...}: no
// well-known default for a secret), with the values the tests run it with.
var composeSecrets = map[string]string{
	"SECKILL_ADMIN_TOKEN":    "test-admin-token-0123456789",
	"SECKILL_JWT_SECRET":     "test-jwt-secret-0123456789abcdef",
	"SECKILL_PURCHASE_KEY":   "test-purchase-key-0123456789abcdef",
	"GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}

// interpolate resolves ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and
// $$ as docker compose does when none of the variables are set but the
// required secrets (composeSecrets), so the test sees the local defaults
// whatever the developer's environment holds.
func interpolate(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("interpolate %q: trailing $", s)
		}
		switch c := s[i+1]; {
		case c == '$':
			b.WriteByte('$')
			i++
		case c == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("interpolate %q: unclosed ${", s)
			}
			inner := s[i+2 : i+end]
			i += end
			name, rest := inner, ""
			if j := strings.IndexAny(inner, ":-?+"); j >= 0 {
				name, rest = inner[:j], inner[j:]
			}
			if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(name) {
				return "", fmt.Errorf("interpolate %q: bad variable %q", s, name)
			}
			rest = strings.TrimPrefix(rest, ":")
			switch {
			case rest == "":
			case rest[0] == '-':
				b.WriteString(rest[1:])
			case rest[0] == '?':
				v, ok := composeSecrets[name]
				if !ok {
					return "", fmt.Errorf("interpolate %q: %s is required: %s", s, name, rest[1:])
				}
				b.WriteString(v)
			case rest[0] == '+':
			}
		case c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			i = j - 1
		default:
			return "", fmt.Errorf("interpolate %q: bad $ at %d", s, i)
		}
	}
	return b.String(), nil
}

// interpolateAll applies interpolate to every string value in v.
func interpolateAll(v any) (any, error) {
	switch x := v.(type) {
	case string:
		return interpolate(x)
	case map[string]any:
		for k, e := range x {
			r, err := interpolateAll(e)
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
	case []any:
		for i, e := range x {
			r, err := interpolateAll(e)
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
	}
	return v, nil
}

// loadCompose parses docker-compose.yml twice: raw (as written) and
// interpolated (as compose runs it with no variables set).
func loadCompose(t *testing.T) (raw, file composeFile) {
	t.Helper()
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatalf("read compose: %v", err)
	}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatalf("parse compose: %v", err)
	}
	var generic map[string]any
	if err := yaml.Unmarshal(b, &generic); err != nil {
		t.Fatalf("parse compose: %v", err)
	}
	resolved, err := interpolateAll(generic)
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	out, err := yaml.Marshal(resolved)
	if err != nil {
		t.Fatalf("re-encode compose: %v", err)
	}
	if err := yaml.Unmarshal(out, &file); err != nil {
		t.Fatalf("parse interpolated compose: %v", err)
	}
	if len(file.Services) == 0 {
		t.Fatalf("compose has no services")
	}
	return raw, file
}

// appConfig is the part of seckill.yaml the ops files must agree with.
type appConfig struct {
	HTTP struct {
		Addr            string `yaml:"addr"`
		ShutdownTimeout string `yaml:"shutdown_timeout"`
	} `yaml:"http"`
	Kafka struct {
		Topic      string `yaml:"topic"`
		Partitions int    `yaml:"partitions"`
	} `yaml:"kafka"`
}

func loadAppConfig(t *testing.T) appConfig {
	t.Helper()
	var c appConfig
	readYAML(t, appConfigPath, &c)
	return c
}

func readYAML(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", p, err)
	}
}

// appInstances returns the compose services that run `seckill serve`.
func appInstances(f composeFile) []string {
	var out []string
	for name, s := range f.Services {
		if s.isAppInstance() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// appPort is the port the instances listen on: SECKILL_HTTP_ADDR when the
// compose file sets it, else http.addr of seckill.yaml.
func appPort(t *testing.T, f composeFile, cfg appConfig) string {
	t.Helper()
	addr := cfg.HTTP.Addr
	for _, name := range appInstances(f) {
		if a, ok := f.Services[name].env()["SECKILL_HTTP_ADDR"]; ok {
			addr = a
		}
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("app http addr %q: %v", addr, err)
	}
	return port
}

// ---- tests ----

func TestComposeServices(t *testing.T) {
	_, f := loadCompose(t)
	for _, name := range []string{"redis", "kafka", "kafka-init", "mysql", "prometheus", "grafana", "lb", "k6"} {
		if _, ok := f.Services[name]; !ok {
			t.Errorf("service %s: got missing, want present", name)
		}
	}
	if got, want := appInstances(f), []string{"app1", "app2"}; !slices.Equal(got, want) {
		t.Errorf("app instances: got %v, want %v", got, want)
	}
	for name, s := range f.Services {
		wantProfiles := []string(nil)
		if name == "k6" {
			wantProfiles = []string{"bench"}
		}
		if !slices.Equal(s.Profiles, wantProfiles) {
			t.Errorf("service %s profiles: got %v, want %v", name, s.Profiles, wantProfiles)
		}
	}
	for name, s := range f.Services {
		if s.Image == "" {
			t.Errorf("service %s image: got empty, want a pinned image", name)
		}
	}

	k6 := f.Services["k6"]
	if got := strings.Join(words(k6.Command), " "); !strings.Contains(got, "/scripts/purchase.js") {
		t.Errorf("k6 command: got %q, want it to run /scripts/purchase.js", got)
	}
	if got := k6.binds()["./bench/k6"]; got != "/scripts" {
		t.Errorf("k6 mount of ./bench/k6: got %q, want /scripts", got)
	}
	if got, want := k6.env()["BASE_URL"], "http://lb:8080"; got != want {
		t.Errorf("k6 BASE_URL: got %q, want %q", got, want)
	}

	redis := f.Services["redis"]
	cmd := strings.Join(words(redis.Command), " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command: got %q, want it to contain %q", cmd, want)
		}
	}
}

func TestComposeAppEnv(t *testing.T) {
	raw, f := loadCompose(t)
	apps := appInstances(f)
	if len(apps) == 0 {
		t.Fatalf("app instances: got none, want at least one")
	}

	mysqlEnv := f.Services["mysql"].env()
	kafkaListeners := advertisedListeners(t, f.Services["kafka"])
	for _, name := range apps {
		env := f.Services[name].env()

		if got, want := env["SECKILL_REDIS_ADDR"], "redis:"+redisPort(f.Services["redis"]); got != want {
			t.Errorf("%s SECKILL_REDIS_ADDR: got %q, want %q", name, got, want)
		}

		dsn, err := mysql.ParseDSN(env["SECKILL_MYSQL_DSN"])
		if err != nil {
			t.Errorf("%s SECKILL_MYSQL_DSN %q: %v", name, env["SECKILL_MYSQL_DSN"], err)
		} else {
			if got, want := dsn.Net+" "+dsn.Addr, "tcp mysql:"+mysqlPort(f.Services["mysql"]); got != want {
				t.Errorf("%s mysql address: got %q, want %q", name, got, want)
			}
			if got, want := dsn.DBName, mysqlEnv["MYSQL_DATABASE"]; got != want || got == "" {
				t.Errorf("%s mysql database: got %q, want %q", name, got, want)
			}
			userOK := dsn.User == mysqlEnv["MYSQL_USER"] && dsn.Passwd == mysqlEnv["MYSQL_PASSWORD"] ||
				dsn.User == "root" && dsn.Passwd == mysqlEnv["MYSQL_ROOT_PASSWORD"]
			if !userOK {
				t.Errorf("%s mysql credentials: got user %q, want the mysql service's MYSQL_USER/MYSQL_PASSWORD or root", name, dsn.User)
			}
			if !dsn.ParseTime {
				t.Errorf("%s mysql parseTime: got false, want true", name)
			}
		}

		brokers := strings.Split(env["SECKILL_KAFKA_BROKERS"], ",")
		for _, b := range brokers {
			if !slices.Contains(kafkaListeners, strings.TrimSpace(b)) {
				t.Errorf("%s kafka broker %q: got not advertised by kafka, want one of %v", name, b, kafkaListeners)
			}
		}
		if len(brokers) == 0 || brokers[0] == "" {
			t.Errorf("%s SECKILL_KAFKA_BROKERS: got empty, want kafka:<port>", name)
		}

		// Secrets: from the environment only, required (no well-known
		// default anyone could use against a published instance).
		rawEnv := raw.Services[name].env()
		for _, key := range []string{"SECKILL_ADMIN_TOKEN", "SECKILL_JWT_SECRET", "SECKILL_PURCHASE_KEY"} {
			if !regexp.MustCompile(`^\$\{` + key + `:\?[^}]+\}$`).MatchString(rawEnv[key]) {
				t.Errorf("%s %s: got %q, want ${%s:?message}", name, key, rawEnv[key], key)
			}
			if env[key] != composeSecrets[key] {
				t.Errorf("%s %s: got %q, want the value it is run with", name, key, env[key])
			}
		}
	}

	// Every container of the seckill image must agree on every SECKILL_*
	// setting: a JWT minted by one instance is verified by another, and all
	// of them share the Redis keys, the database and the topics.
	var first string
	for name, s := range f.Services {
		if !s.usesSeckillImage() {
			continue
		}
		if first == "" {
			first = name
			continue
		}
		a, b := f.Services[first].env(), s.env()
		for _, key := range []string{"SECKILL_REDIS_ADDR", "SECKILL_REDIS_PREFIX", "SECKILL_MYSQL_DSN", "SECKILL_KAFKA_BROKERS",
			"SECKILL_KAFKA_PARTITIONS", "SECKILL_ADMIN_TOKEN", "SECKILL_JWT_SECRET", "SECKILL_PURCHASE_KEY",
			"SECKILL_PURCHASE_KEY_ID", "SECKILL_PURCHASE_OLD_KEYS"} {
			if a[key] != b[key] {
				t.Errorf("%s %s: got %q, want %q as in %s", name, key, b[key], a[key], first)
			}
		}
	}
}

// redisPort is the port the redis service listens on.
func redisPort(s service) string {
	w := words(s.Command)
	for i, a := range w {
		if a == "--port" && i+1 < len(w) {
			return w[i+1]
		}
	}
	return "6379"
}

// mysqlPort is the port the mysql service listens on.
func mysqlPort(s service) string {
	if p := s.env()["MYSQL_TCP_PORT"]; p != "" {
		return p
	}
	return "3306"
}

// advertisedListeners returns the host:port addresses the kafka service
// advertises to clients on the compose network (host = service name).
func advertisedListeners(t *testing.T, s service) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(s.env()["KAFKA_ADVERTISED_LISTENERS"], ",") {
		_, hostport, ok := strings.Cut(l, "://")
		if !ok {
			continue
		}
		if host, _, err := net.SplitHostPort(hostport); err == nil && host == "kafka" {
			out = append(out, hostport)
		}
	}
	if len(out) == 0 {
		t.Fatalf("kafka KAFKA_ADVERTISED_LISTENERS: got none for host kafka, want one")
	}
	return out
}

func TestComposeAppPort(t *testing.T) {
	_, f := loadCompose(t)
	cfg := loadAppConfig(t)
	_, cfgPort, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		t.Fatalf("seckill.yaml http.addr %q: %v", cfg.HTTP.Addr, err)
	}
	port := appPort(t, f, cfg)
	if port != cfgPort {
		t.Errorf("app port: got %s, want %s (http.addr in seckill.yaml)", port, cfgPort)
	}
	shutdown, err := time.ParseDuration(cfg.HTTP.ShutdownTimeout)
	if err != nil {
		t.Fatalf("seckill.yaml http.shutdown_timeout: %v", err)
	}
	for _, name := range appInstances(f) {
		s := f.Services[name]
		if s.Healthcheck == nil {
			t.Errorf("%s healthcheck: got none, want one", name)
		} else if got := strings.Join(words(s.Healthcheck.Test), " "); !strings.Contains(got, ":"+port+"/readyz") {
			t.Errorf("%s healthcheck: got %q, want it to call :%s/readyz", name, got, port)
		}
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil || grace <= shutdown {
			t.Errorf("%s stop_grace_period: got %q, want more than http.shutdown_timeout %v", name, s.StopGracePeriod, shutdown)
		}
	}

	// The load balancer sends traffic to exactly the app instances.
	var want []string
	for _, name := range appInstances(f) {
		want = append(want, name+":"+port)
	}
	if got := nginxUpstreams(t); !slices.Equal(got, want) {
		t.Errorf("lb upstream servers: got %v, want %v", got, want)
	}
	if got := f.Services["lb"].binds()["./configs/lb/nginx.conf"]; got != "/etc/nginx/nginx.conf" {
		t.Errorf("lb mount of nginx.conf: got %q, want /etc/nginx/nginx.conf", got)
	}

	df := readFile(t, dockerfilePath)
	if !regexp.MustCompile(`(?m)^EXPOSE\s+` + port + `\b`).MatchString(df) {
		t.Errorf("Dockerfile EXPOSE: got none for %s, want EXPOSE %s", port, port)
	}
}

// nginxUpstreams returns the sorted `server host:port` lines of lb's config.
func nginxUpstreams(t *testing.T) []string {
	t.Helper()
	var out []string
	re := regexp.MustCompile(`^\s*server\s+([^\s;{]+)[^{]*;`) // not `server {`
	sc := bufio.NewScanner(strings.NewReader(readFile(t, lbConfigPath)))
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func TestComposeDependsOn(t *testing.T) {
	_, f := loadCompose(t)
	conditions := []string{"service_started", "service_healthy", "service_completed_successfully"}
	for name, s := range f.Services {
		for dep, cond := range s.deps() {
			d, ok := f.Services[dep]
			if !ok {
				t.Errorf("%s depends_on %s: got no such service, want an existing one", name, dep)
				continue
			}
			if !slices.Contains(conditions, cond) {
				t.Errorf("%s depends_on %s condition: got %q, want one of %v", name, dep, cond, conditions)
			}
			if cond == "service_healthy" && (d.Healthcheck == nil || d.Healthcheck.Disable || len(words(d.Healthcheck.Test)) == 0) {
				t.Errorf("%s depends_on %s healthy: got no healthcheck on %s, want one", name, dep, dep)
			}
			if cond == "service_completed_successfully" && d.Restart != "" && d.Restart != "no" {
				t.Errorf("%s depends_on %s completed: got restart %q on %s, want a one-shot (restart no)", name, dep, d.Restart, dep)
			}
			if len(s.Profiles) == 0 && len(d.Profiles) > 0 {
				t.Errorf("%s depends_on %s: got a dependency in profiles %v, want one that always starts", name, dep, d.Profiles)
			}
		}
	}

	// No cycles: compose would refuse to start.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, []string)
	visit = func(n string, trail []string) {
		switch state[n] {
		case 1:
			t.Errorf("depends_on cycle: got %v, want none", append(trail, n))
			return
		case 2:
			return
		}
		state[n] = 1
		for dep := range f.Services[n].deps() {
			visit(dep, append(trail, n))
		}
		state[n] = 2
	}
	for name := range f.Services {
		visit(name, nil)
	}

	// The instances start only on a migrated schema and existing topics.
	for _, name := range appInstances(f) {
		deps := f.Services[name].deps()
		for dep, want := range map[string]string{"redis": "service_healthy", "migrate": "service_completed_successfully",
			"kafka-init": "service_completed_successfully"} {
			if got := deps[dep]; got != want {
				t.Errorf("%s depends_on %s: got %q, want %q", name, dep, got, want)
			}
		}
	}
	if got := f.Services["migrate"].deps()["mysql"]; got != "service_healthy" {
		t.Errorf("migrate depends_on mysql: got %q, want service_healthy", got)
	}
	if got := words(f.Services["migrate"].Command); !slices.Equal(got, []string{"migrate"}) {
		t.Errorf("migrate command: got %v, want [migrate]", got)
	}
}

func TestComposeBindMounts(t *testing.T) {
	_, f := loadCompose(t)
	n := 0
	for name, s := range f.Services {
		for src := range s.binds() {
			n++
			rel := filepath.Join("..", filepath.FromSlash(src))
			if _, err := os.Stat(rel); err != nil {
				// bench/ belongs to the load-test work and may not exist yet.
				if strings.HasPrefix(path.Clean(src), "bench/") {
					t.Logf("%s mounts %s, not present yet", name, src)
					continue
				}
				t.Errorf("%s mounts %s: got %v, want an existing path", name, src, err)
			}
		}
	}
	if n == 0 {
		t.Errorf("bind mounts: got none, want the configs mounted")
	}
}

func TestKafkaInitTopics(t *testing.T) {
	_, f := loadCompose(t)
	cfg := loadAppConfig(t)
	s := f.Services["kafka-init"]
	created := map[string]int{}
	for _, line := range strings.Split(strings.Join(words(s.Command), " "), "/opt/") {
		w := strings.Fields(line)
		if !slices.Contains(w, "--create") {
			continue
		}
		topic, parts := "", 0
		for i := 0; i+1 < len(w); i++ {
			switch w[i] {
			case "--topic":
				topic = w[i+1]
			case "--partitions":
				parts, _ = strconv.Atoi(w[i+1])
			}
		}
		created[topic] = parts
	}
	if got, want := created[cfg.Kafka.Topic], cfg.Kafka.Partitions; got != want {
		t.Errorf("kafka-init %s partitions: got %d, want %d (kafka.partitions)", cfg.Kafka.Topic, got, want)
	}
	// Only the topics the app uses (a dead-letter topic is no longer one:
	// dead letters are rows of dead_letters).
	if len(created) != 1 {
		t.Errorf("kafka-init topics: got %v, want only %s", created, cfg.Kafka.Topic)
	}
	for _, name := range appInstances(f) {
		if got, want := f.Services[name].env()["SECKILL_KAFKA_PARTITIONS"], strconv.Itoa(cfg.Kafka.Partitions); got != "" && got != want {
			t.Errorf("%s SECKILL_KAFKA_PARTITIONS: got %s, want %s as kafka-init creates", name, got, want)
		}
	}
	if got := f.Services["kafka"].env()["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]; got != "false" {
		t.Errorf("kafka auto.create.topics: got %q, want false", got)
	}
}

func TestDockerfile(t *testing.T) {
	df := readFile(t, dockerfilePath)
	stages := regexp.MustCompile(`(?m)^FROM\s`).FindAllStringIndex(df, -1)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile stages: got %d, want a multi-stage build", len(stages))
	}
	final := df[stages[len(stages)-1][0]:]
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "FROM golang:1.26"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: got no %q, want it", want)
		}
	}
	if !regexp.MustCompile(`(?m)^COPY\s+configs/seckill\.yaml\s`).MatchString(final) {
		t.Errorf("Dockerfile final stage: got no COPY of configs/seckill.yaml, want one")
	}
	m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(final)
	if m == nil {
		t.Errorf("Dockerfile final stage USER: got none (root), want a non-root user")
	} else if u, _, _ := strings.Cut(m[1], ":"); u == "root" || u == "0" {
		t.Errorf("Dockerfile final stage USER: got %s, want a non-root user", m[1])
	}

	// .dockerignore must keep what the build needs.
	patterns := strings.Split(readFile(t, dockerignore), "\n")
	for _, need := range []string{"go.mod", "go.sum", "configs/seckill.yaml", "migrations/00001_init.sql", "stock/stock.go"} {
		if p := ignoredBy(patterns, need); p != "" {
			t.Errorf(".dockerignore: got %s excluded by %q, want it in the build context", need, p)
		}
	}
	if p := ignoredBy(patterns, ".git/HEAD"); p == "" {
		t.Errorf(".dockerignore: got .git in the build context, want it excluded")
	}
}

// ignoredBy returns the .dockerignore pattern that excludes file (or one of
// its parent directories), or "" when none does.
func ignoredBy(patterns []string, file string) string {
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") || strings.HasPrefix(p, "!") {
			continue
		}
		clean := strings.Trim(p, "/")
		for dir := file; dir != "." && dir != "/"; dir = path.Dir(dir) {
			if ok, _ := path.Match(clean, dir); ok {
				return p
			}
		}
	}
	return ""
}

// promConfig is the part of prometheus.yml the tests check.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName        string `yaml:"job_name"`
		ScrapeInterval string `yaml:"scrape_interval"`
		MetricsPath    string `yaml:"metrics_path"`
		StaticConfigs  []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestPrometheusTargets(t *testing.T) {
	_, f := loadCompose(t)
	port := appPort(t, f, loadAppConfig(t))
	var pc promConfig
	readYAML(t, promConfigPath, &pc)

	var want []string
	for _, name := range appInstances(f) {
		want = append(want, name+":"+port)
	}
	var got []string
	for _, sc := range pc.ScrapeConfigs {
		interval := sc.ScrapeInterval
		if interval == "" {
			interval = pc.Global.ScrapeInterval
		}
		if interval != "5s" {
			t.Errorf("job %s scrape interval: got %q, want 5s", sc.JobName, interval)
		}
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s metrics_path: got %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("prometheus targets: got %v, want %v", got, want)
	}

	if len(pc.RuleFiles) == 0 {
		t.Errorf("rule_files: got none, want alerts.yml")
	}
	for _, rf := range pc.RuleFiles {
		if _, err := os.Stat(filepath.Join(filepath.Dir(promConfigPath), rf)); err != nil {
			t.Errorf("rule file %s: got %v, want it next to prometheus.yml", rf, err)
		}
	}

	// Prometheus reads the config from where compose mounts configs/prometheus.
	prom := f.Services["prometheus"]
	mount := prom.binds()["./configs/prometheus"]
	var cfgFlag string
	for _, w := range words(prom.Command) {
		if v, ok := strings.CutPrefix(w, "--config.file="); ok {
			cfgFlag = v
		}
	}
	if mount == "" || cfgFlag != path.Join(mount, "prometheus.yml") {
		t.Errorf("prometheus --config.file: got %q with ./configs/prometheus at %q, want <mount>/prometheus.yml", cfgFlag, mount)
	}
}

// alertFile is the Prometheus rule file format.
type alertFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestAlertRules(t *testing.T) {
	var af alertFile
	readYAML(t, promAlertsPath, &af)

	// The alerts the promises need, by the metric and function they watch,
	// with their minimum `for`.
	required := []struct {
		name   string
		match  *regexp.Regexp
		minFor time.Duration
	}{
		{"oversold > 0", regexp.MustCompile(`seckill_oversold\b.*>\s*0`), 0},
		{"stock drift != 0", regexp.MustCompile(`seckill_stock_drift\b.*!=\s*0`), time.Minute},
		{"outbox backlog growing", regexp.MustCompile(`deriv\(\s*seckill_outbox_backlog\b`), 5 * time.Minute},
		{"consumer lag growing", regexp.MustCompile(`deriv\(\s*seckill_consumer_lag\b`), 5 * time.Minute},
		{"5xx rate > 1%", regexp.MustCompile(`(?s)seckill_http_requests_total\{status=~"5\.\."\}.*/.*seckill_http_requests_total.*>\s*0\.01`), 0},
	}
	found := make([]bool, len(required))
	n := 0
	for _, g := range af.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" {
				continue
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s severity: got none, want one", r.Alert)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s summary: got none, want one", r.Alert)
			}
			for _, problem := range checkExpr(r.Expr) {
				t.Errorf("alert %s: %s", r.Alert, problem)
			}
			var forDur time.Duration
			if r.For != "" {
				d, err := time.ParseDuration(r.For)
				if err != nil {
					t.Errorf("alert %s for: got %q, want a duration", r.Alert, r.For)
				}
				forDur = d
			}
			for i, req := range required {
				if req.match.MatchString(r.Expr) {
					found[i] = true
					if forDur < req.minFor {
						t.Errorf("alert %s for: got %v, want at least %v", r.Alert, forDur, req.minFor)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("alert rules: got none, want some")
	}
	for i, req := range required {
		if !found[i] {
			t.Errorf("alert %q: got none, want one", req.name)
		}
	}
}

// dashboard is the part of a Grafana dashboard JSON the tests check.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Datasource *datasourceRef  `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Datasource  *datasourceRef `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Thresholds *struct {
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// provisionedDatasource returns the uid and URL of the provisioned Prometheus.
func provisionedDatasource(t *testing.T) (uid, rawURL string) {
	t.Helper()
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, datasourcePath, &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("provisioned datasources: got %+v, want one prometheus with a uid", ds.Datasources)
	}
	return ds.Datasources[0].UID, ds.Datasources[0].URL
}

func TestGrafanaProvisioning(t *testing.T) {
	_, f := loadCompose(t)
	_, rawURL := provisionedDatasource(t)
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("datasource url %q: %v", rawURL, err)
	}
	if got, want := u.Host, "prometheus:9090"; got != want {
		t.Errorf("datasource host: got %q, want %q", got, want)
	}
	if _, ok := f.Services[u.Hostname()]; !ok {
		t.Errorf("datasource host %s: got no such service, want the prometheus service", u.Hostname())
	}

	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, dashProvPath, &prov)
	g := f.Services["grafana"].binds()
	if got := g["./configs/grafana/provisioning"]; got != "/etc/grafana/provisioning" {
		t.Errorf("grafana provisioning mount: got %q, want /etc/grafana/provisioning", got)
	}
	if len(prov.Providers) == 0 {
		t.Fatalf("dashboard providers: got none, want one")
	}
	for _, p := range prov.Providers {
		if got, want := p.Options.Path, g["./configs/grafana/dashboards"]; got != want || got == "" {
			t.Errorf("dashboard provider path: got %q, want %q (where compose mounts configs/grafana/dashboards)", got, want)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	uid, _ := provisionedDatasource(t)
	var d dashboard
	if err := json.Unmarshal([]byte(readFile(t, dashboardPath)), &d); err != nil {
		t.Fatalf("parse dashboard: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid/title: got %q/%q, want both set", d.UID, d.Title)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("panels: got none, want some")
	}

	checkDS := func(where string, ds *datasourceRef) {
		if ds != nil && ds.Type == "prometheus" && ds.UID != uid {
			t.Errorf("%s datasource uid: got %q, want %q", where, ds.UID, uid)
		}
	}
	used := map[string]bool{}
	ids := map[int]string{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %q", p.Title)
		if other, dup := ids[p.ID]; dup {
			t.Errorf("%s id %d: got the id of %q too, want unique ids", where, p.ID, other)
		}
		ids[p.ID] = p.Title
		checkDS(where, p.Datasource)
		n := 0
		for _, tg := range p.Targets {
			checkDS(where, tg.Datasource)
			if strings.TrimSpace(tg.Expr) == "" {
				continue
			}
			n++
			for _, problem := range checkExpr(tg.Expr) {
				t.Errorf("%s: %s", where, problem)
			}
			for _, m := range exprMetrics(tg.Expr) {
				used[familyOf(m)] = true
			}
		}
		if n == 0 {
			t.Errorf("%s targets with expr: got 0, want at least 1", where)
		}
	}
	for _, v := range d.Templating.List {
		checkDS("variable "+v.Name, v.Datasource)
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			json.Unmarshal(v.Query, &q.Query)
		}
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s query: got %q, want label_values(metric, label)", v.Name, q.Query)
			continue
		}
		def, ok := lookupSeries(m[1])
		if !ok || !slices.Contains(def, m[2]) {
			t.Errorf("variable %s query %q: got an unknown metric or label, want an exported one", v.Name, q.Query)
		}
	}

	// Every exported metric has a panel: an unwatched metric is dead weight,
	// a missing one hides a broken promise.
	for name := range exported {
		if !used[name] {
			t.Errorf("dashboard: got no panel for %s, want one", name)
		}
	}

	// Oversold and drift are stat panels that turn red above 0.
	for _, metric := range []string{"seckill_oversold", "seckill_stock_drift"} {
		found := false
		for _, p := range d.Panels {
			if p.Type != "stat" || len(p.Targets) == 0 || !slices.Contains(exprMetrics(p.Targets[0].Expr), metric) {
				continue
			}
			found = true
			th := p.FieldConfig.Defaults.Thresholds
			if th == nil || len(th.Steps) < 2 {
				t.Errorf("panel %q thresholds: got none, want green at 0 and red above", p.Title)
				continue
			}
			// Steps apply from their value up; evaluate at 0 and at 1.
			colorAt := func(v float64) string {
				c := ""
				for _, s := range th.Steps {
					if s.Value == nil || *s.Value <= v {
						c = s.Color
					}
				}
				return c
			}
			if got := colorAt(0); got != "green" {
				t.Errorf("panel %q color at 0: got %s, want green", p.Title, got)
			}
			if got := colorAt(1); got != "red" {
				t.Errorf("panel %q color at 1: got %s, want red", p.Title, got)
			}
		}
		if !found {
			t.Errorf("dashboard: got no stat panel for %s, want one", metric)
		}
	}
}

func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool not on PATH under CI: %v", err)
		}
		t.Skipf("promtool not on PATH, skipping: %v", err)
	}
	for _, args := range [][]string{
		{"check", "config", promConfigPath},
		{"check", "rules", promAlertsPath},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: got %v, want success:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ---- PromQL name checks ----

var (
	grafanaVarRe = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	stringRe     = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	selectorRe   = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}`)
	matcherRe    = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)`)
	rangeRe      = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRe   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	tokenRe      = regexp.MustCompile(`[A-Za-z0-9_:.]+`)
	keywords     = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring", "group_left", "group_right"}
)

// parsedExpr is what a PromQL expression refers to.
type parsedExpr struct {
	metrics  []string            // series names, e.g. seckill_x_bucket
	matchers map[string][]string // series name ("" when bare) -> matcher labels
	grouping []string            // labels in by/without/on/ignoring/group_*
}

// parsePromQL finds the series names and label names in expr. It is a
// scanner, not a parser: promtool checks the syntax, this checks the names.
func parsePromQL(expr string) parsedExpr {
	p := parsedExpr{matchers: map[string][]string{}}
	s := grafanaVarRe.ReplaceAllString(expr, "0")
	s = stringRe.ReplaceAllString(s, `""`)
	s = selectorRe.ReplaceAllStringFunc(s, func(sel string) string {
		m := selectorRe.FindStringSubmatch(sel)
		for _, part := range strings.Split(m[2], ",") {
			if lm := matcherRe.FindStringSubmatch(part); lm != nil {
				p.matchers[m[1]] = append(p.matchers[m[1]], lm[1])
			}
		}
		return m[1]
	})
	s = rangeRe.ReplaceAllString(s, "")
	s = groupingRe.ReplaceAllStringFunc(s, func(g string) string {
		m := groupingRe.FindStringSubmatch(g)
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				p.grouping = append(p.grouping, l)
			}
		}
		return " "
	})
	for _, loc := range tokenRe.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || tok[0] == '.' || slices.Contains(keywords, strings.ToLower(tok)) {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // function or aggregation
		}
		p.metrics = append(p.metrics, tok)
	}
	return p
}

// exprMetrics returns the series names expr queries.
func exprMetrics(expr string) []string {
	return parsePromQL(expr).metrics
}

// familyOf maps a series name to its metric family (x_bucket -> x).
func familyOf(series string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suf)
		if def, known := exported[base]; ok && known && def.kind == histogram {
			return base
		}
	}
	return series
}

// lookupSeries returns the labels a series name may carry, and whether the
// app (or Prometheus) exports it at all.
func lookupSeries(series string) ([]string, bool) {
	labels := slices.Clone(targetLabels)
	if def, ok := builtin[series]; ok {
		return append(labels, def.labels...), true
	}
	if def, ok := exported[series]; ok && def.kind != histogram {
		return append(labels, def.labels...), true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suf)
		if def, known := exported[base]; ok && known && def.kind == histogram {
			labels = append(labels, def.labels...)
			if suf == "_bucket" {
				labels = append(labels, "le")
			}
			return labels, true
		}
	}
	return nil, false
}

// checkExpr returns what is wrong with the names expr uses: series the app
// does not export, and labels those series do not carry.
func checkExpr(expr string) []string {
	var problems []string
	p := parsePromQL(expr)
	if len(p.metrics) == 0 {
		problems = append(problems, fmt.Sprintf("expr %q: got no metric, want one", expr))
	}
	union := map[string]bool{}
	for _, m := range p.metrics {
		labels, ok := lookupSeries(m)
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s: got unknown, want one the app exports", m))
			continue
		}
		for _, l := range labels {
			union[l] = true
		}
	}
	for series, labels := range p.matchers {
		allowed, ok := lookupSeries(series)
		for _, l := range labels {
			if series == "" && !union[l] || ok && !slices.Contains(allowed, l) {
				problems = append(problems, fmt.Sprintf("label %s on %s: got unknown, want one of %v", l, series, allowed))
			}
		}
	}
	for _, l := range p.grouping {
		if !union[l] {
			problems = append(problems, fmt.Sprintf("grouping label %s: got not on any queried series, want one that is", l))
		}
	}
	return problems
}

func TestCheckExpr(t *testing.T) {
	tests := []struct {
		expr        string
		wantMetrics []string
		wantOK      bool
	}{
		{`max by (item) (seckill_oversold) > 0`, []string{"seckill_oversold"}, true},
		{`histogram_quantile(0.99, sum by (le) (rate(seckill_http_request_duration_seconds_bucket{route=~"$route"}[$__rate_interval])))`,
			[]string{"seckill_http_request_duration_seconds_bucket"}, true},
		{`sum(rate(seckill_http_requests_total{status=~"5.."}[1m])) / sum(rate(seckill_http_requests_total[1m])) > 0.01`,
			[]string{"seckill_http_requests_total", "seckill_http_requests_total"}, true},
		{`up{job="seckill"} == 0`, []string{"up"}, true},
		{`sum(rate(seckill_consumer_batch_size_sum[5m])) / sum(rate(seckill_consumer_batch_size_count[5m]))`,
			[]string{"seckill_consumer_batch_size_sum", "seckill_consumer_batch_size_count"}, true},
		{`seckill_oversold offset 5m`, []string{"seckill_oversold"}, true},
		// Typo in a name.
		{`max(seckil_oversold)`, []string{"seckil_oversold"}, false},
		// A histogram has no bare series.
		{`seckill_consumer_batch_size`, []string{"seckill_consumer_batch_size"}, false},
		// le only exists on _bucket.
		{`sum by (le) (seckill_relay_publish_duration_seconds_count)`, []string{"seckill_relay_publish_duration_seconds_count"}, false},
		// Wrong label in a matcher and in a grouping.
		{`seckill_purchases_total{result="ok"}`, []string{"seckill_purchases_total"}, false},
		{`sum by (user) (seckill_purchases_total)`, []string{"seckill_purchases_total"}, false},
		// No metric at all.
		{`vector(1)`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := exprMetrics(tt.expr); !slices.Equal(got, tt.wantMetrics) {
				t.Errorf("metrics: got %v, want %v", got, tt.wantMetrics)
			}
			problems := checkExpr(tt.expr)
			if got := len(problems) == 0; got != tt.wantOK {
				t.Errorf("ok: got %v (%v), want %v", got, problems, tt.wantOK)
			}
		})
	}
}

func TestInterpolate(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"${A:-dev}", "dev", false},
		{"${A-dev}", "dev", false},
		{"x${A}y", "xy", false},
		{"$$HOME", "$HOME", false},
		{"a$B-c", "a-c", false},
		{"seckill:${P:-pw}@tcp(mysql:3306)/db", "seckill:pw@tcp(mysql:3306)/db", false},
		{"${A:?must be set}", "", true},
		{"${A", "", true},
		{"cost $5", "", true},
	}
	for _, tt := range tests {
		got, err := interpolate(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("interpolate(%q): got %q, %v, want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestComposeHasNoKnownSecrets: compose refuses to start without the admin
// token, the JWT secret and the Grafana password (no well-known default),
// publishes nothing on all interfaces, and keeps off the ports of a local
// Redis and MySQL.
func TestComposeHasNoKnownSecrets(t *testing.T) {
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for name := range composeSecrets {
		if !regexp.MustCompile(`\$\{` + name + `:\?`).MatchString(text) {
			t.Errorf("%s is not required (${%s:?...})", name, name)
		}
		if regexp.MustCompile(`\$\{` + name + `:-`).MatchString(text) {
			t.Errorf("%s has a default value", name)
		}
	}
	_, file := loadCompose(t)
	for svc, def := range file.Services {
		for _, p := range def.Ports {
			parts := strings.Split(p, ":")
			if len(parts) < 3 || parts[0] != "127.0.0.1" {
				t.Errorf("service %s publishes %q beyond 127.0.0.1 by default", svc, p)
			}
			if len(parts) == 3 && (parts[1] == "6379" || parts[1] == "3306") {
				t.Errorf("service %s publishes %q on a port local Redis/MySQL use", svc, p)
			}
		}
	}
}

package handler

import (
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP-level series. Labels stay low-cardinality: the route
// template, never an id.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	purchases *prometheus.CounterVec
	// byOutcome holds the purchase counter of every known code, resolved
	// once: the hot path does no label hashing. Read-only after start.
	byOutcome map[string]prometheus.Counter
	// series caches the request counter and latency observer of each
	// route, method and status seen, so a request costs one lock-free
	// lookup instead of two label hashes. It holds no more entries than the
	// two vectors hold series.
	series sync.Map // seriesKey -> *routeSeries
}

// seriesKey names the series of one request.
type seriesKey struct {
	route, method string
	status        int
}

// routeSeries are the resolved series of one seriesKey.
type routeSeries struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func (m *metrics) outcome(code string) prometheus.Counter {
	if c, ok := m.byOutcome[code]; ok {
		return c
	}
	return m.purchases.WithLabelValues(code)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "seckill_http_request_duration_seconds",
			Help:    "HTTP request latency by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "method"}),
		purchases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_purchases_total", Help: "Purchase attempts by outcome code.",
		}, []string{"outcome"}),
		byOutcome: map[string]prometheus.Counter{},
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.purchases} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, o := range []string{"ok", CodeSoldOut, CodePurchaseLimit, CodeTokenInvalid, CodeSaleNotStarted, CodeSaleEnded,
		CodeRateLimited, CodeOverloaded, CodeUnavailable} {
		m.byOutcome[o] = m.purchases.WithLabelValues(o)
	}
	return m, nil
}

// observe is the middleware that counts and times every request.
func (m *metrics) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	route := c.FullPath()
	method := c.Request.Method
	if route == "" {
		// Any path and any method string can miss the routes: one series
		// for them all keeps the label set bounded.
		route, method = "unmatched", "any"
	}
	rs := m.seriesOf(seriesKey{route: route, method: method, status: c.Writer.Status()})
	rs.requests.Inc()
	rs.latency.Observe(time.Since(start).Seconds())
}

func (m *metrics) seriesOf(k seriesKey) *routeSeries {
	if rs, ok := m.series.Load(k); ok {
		return rs.(*routeSeries)
	}
	rs := &routeSeries{
		requests: m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.status)),
		latency:  m.latency.WithLabelValues(k.route, k.method),
	}
	// Two requests may resolve the same key at once: both got the same
	// series from the vectors, so either entry is right.
	m.series.Store(k, rs)
	return rs
}

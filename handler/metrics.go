package handler

import (
	"strconv"
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
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
	m.latency.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
}

// Package handler is the HTTP transport: Gin routes, auth, admission and the
// one table that turns errors into problem+json answers.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"seckill/order/lifecycle"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/limiter"
	"seckill/order"
	"seckill/stock"
)

// Deps is what the handlers need, built by app.
type Deps struct {
	Stock   *stock.Store
	Orders  *order.Store
	Limiter *limiter.Limiter
	// IDs makes order ids, unique among running instances.
	IDs        IDs
	AdminToken string
	JWTSecret  string
	Log        *slog.Logger
	Registry   *prometheus.Registry
	// Ready reports whether the dependencies answer (for /readyz).
	Ready func(ctx context.Context) error
	// Ledger gives the reconciliation numbers of an item and rebuilds its
	// Redis stock; nil disables those admin endpoints.
	Ledger Ledger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Journal, if set, remembers accepted purchases so that ones Redis
	// lost with its data are counted.
	Journal *lifecycle.Journal
	// MetricsElsewhere leaves /metrics out of Routes: it is served
	// (MetricsHandler) on a listener an operator keeps private.
	MetricsElsewhere bool
}

// IDs makes order ids; an error means no id can be made safely now.
type IDs interface {
	// NextID makes an id for the slot group g (stock.HomeGroup of the
	// purchase): stock.OrderGroup of the id is g.
	NextID(g int) (int64, error)
}

// Ledger is the reconciler as the admin endpoints use it.
type Ledger interface {
	Stats(ctx context.Context, it order.Item) (any, error)
	Rebuild(ctx context.Context, it order.Item) error
}

// Handler serves the API.
type Handler struct {
	Deps
	items      *itemCache
	metrics    *metrics
	parser     *jwt.Parser
	jwtSecret  []byte
	adminToken []byte
	// answers remembers the final answers of purchase keys, so a retried
	// key gets its answer again without Redis (bounded; a forgotten one
	// costs one Redis call, which reads the answer Redis keeps).
	answers *genCache[acceptedKey, answer]
	// users remembers verified user tokens: a flash sale sees the same
	// token many times, and HMAC plus JSON decoding is most of the cost of
	// a refused purchase.
	users *genCache[tokenDigest, verifiedUser]
}

// New builds the handler and registers its metrics.
func New(d Deps) (*Handler, error) {
	if d.AdminToken == "" || d.JWTSecret == "" {
		return nil, errors.New("handler: admin token and jwt secret are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	m, err := newMetrics(d.Registry)
	if err != nil {
		return nil, err
	}
	return &Handler{
		Deps:       d,
		items:      newItemCache(d.Orders, d.Now),
		metrics:    m,
		parser:     newUserParser(d.Now),
		jwtSecret:  []byte(d.JWTSecret),
		adminToken: []byte(d.AdminToken),
		answers:    newGenCache[acceptedKey, answer](1 << 18),
		users:      newGenCache[tokenDigest, verifiedUser](1 << 16),
	}, nil
}

// handle adapts a handler that returns an error: the one place errors are
// rendered and internal ones logged.
func (h *Handler) handle(fn func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		err := fn(c)
		if err == nil {
			return
		}
		p, internal := toProblem(err)
		if internal {
			h.Log.ErrorContext(c.Request.Context(), "request failed", "route", c.FullPath(), "err", err)
		}
		writeProblem(c, p)
	}
}

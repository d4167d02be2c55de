// Package handler is the HTTP transport: Gin routes, auth, and the one
// table that turns the sale's outcomes into problem+json answers. The
// sale's rules are package sale's; a handler parses, calls it and renders.
package handler

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/order/sale"
)

// Deps is what the handlers need, built by app.
type Deps struct {
	// Sale runs the sale's rules; the handlers parse, call it and render.
	Sale       *sale.Sale
	AdminToken string
	JWTSecret  string
	Log        *slog.Logger
	Registry   *prometheus.Registry
	// Checks are /readyz's: it answers 503 naming those that fail.
	Checks []Check
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MetricsElsewhere leaves /metrics out of Routes: it is served
	// (MetricsHandler) on a listener an operator keeps private.
	MetricsElsewhere bool
	// Payments configures the provider's callback and the demo pay route
	// (payments.go).
	Payments Payments
}

// Check is one named readiness check: Func reports whether the dependency
// Name answers (nil: it does).
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// Handler serves the API.
type Handler struct {
	Deps
	metrics    *metrics
	parser     *jwt.Parser
	jwtSecret  []byte
	macs       *macPool // HMAC states for userFast
	adminToken []byte
	// users remembers verified user tokens: a flash sale sees the same
	// token many times, and HMAC plus JSON decoding is most of the cost of
	// a refused purchase.
	users *sale.Recent[tokenDigest, verifiedUser]
	// pay counts payments and revenue (payments.go).
	payStats *payMetrics
	// pages keeps the product pages as last rendered (pages.go).
	pages *pages
}

// verifiedUserMemory is the generation size of the memory of verified user
// tokens: 64k to 128k tokens, about 14 MB (BenchmarkCrowdMemory), however many
// buyers come; a token that fell out is verified again (HMAC, no call).
const verifiedUserMemory = 1 << 16

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
	pm, err := newPayMetrics(d.Registry)
	if err != nil {
		return nil, err
	}
	return &Handler{
		pages:      newPages(),
		Deps:       d,
		metrics:    m,
		parser:     newUserParser(d.Now),
		jwtSecret:  []byte(d.JWTSecret),
		macs:       newMACPool([]byte(d.JWTSecret)),
		adminToken: []byte(d.AdminToken),
		users:      sale.NewRecent[tokenDigest, verifiedUser](verifiedUserMemory),
		payStats:   pm,
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

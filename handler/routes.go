package handler

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Routes is every route of the API. It sets nothing process-wide: gin's
// mode (release in the binary) is set by main.
func (h *Handler) Routes() *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery(), h.metrics.observe)
	r.NoRoute(func(c *gin.Context) { writeProblem(c, errNotFound) })
	r.HandleMethodNotAllowed = false
	// A path the API does not list is the documented 404, a trailing slash
	// or other spelling included: a redirect would make a second spelling
	// of every route that clients then depend on.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	// Routes match the path as sent: an escaped spelling ("/items/%31",
	// "/%69tems/1") is not another name of a route or an id. Only a path
	// with an escape the standard form would not use differs (RawPath).
	r.UseRawPath = true
	r.UnescapePathValues = false

	r.GET("/healthz", h.healthz)
	r.GET("/readyz", h.handle(h.readyz))
	if !h.MetricsElsewhere {
		r.GET("/metrics", gin.WrapH(h.MetricsHandler()))
	}
	r.GET("/openapi.yaml", h.openAPI)

	v1 := r.Group("/api/v1")
	v1.GET("/items/:id", h.handle(h.getItem))

	// User routes: asUser answers 401 before the handler reads anything.
	v1.POST("/items/:id/tokens", h.handle(h.asUser(h.issueToken)))
	v1.POST("/items/:id/purchase", h.handle(h.asUser(oneIdempotencyKey(h.purchase))))
	v1.GET("/orders/:id", h.handle(h.asUser(h.getOrder)))
	v1.POST("/orders/:id/pay", h.handle(h.asUser(h.pay)))

	// Payments and cancels (payments.go): the provider's callback is
	// authenticated by its signature, not a user token.
	v1.POST("/orders/:id/cancel", h.handle(h.asUser(h.cancelOrder)))
	v1.POST("/payments/callback", h.handle(h.paymentCallback))

	admin := v1.Group("/admin", h.requireAdmin)
	admin.POST("/items", h.handle(h.createItem))
	admin.GET("/items/:id/stats", h.handle(h.stats))
	admin.POST("/items/:id/rebuild", h.handle(h.rebuild))

	// The operator's controls and the order lists (admin.go).
	v1.GET("/orders", h.handle(h.asUser(h.myOrders)))
	admin.GET("/items", h.handle(h.listItems))
	admin.PATCH("/items/:id", h.handle(h.itemChange(h.editItem)))
	admin.POST("/items/:id/pause", h.handle(h.itemChange(h.pauseItem)))
	admin.POST("/items/:id/resume", h.handle(h.itemChange(h.resumeItem)))
	admin.POST("/items/:id/end", h.handle(h.itemChange(h.endItem)))
	admin.POST("/items/:id/stock", h.handle(h.addStock))
	admin.GET("/users/:id/orders", h.handle(h.userOrders))
	return r
}

// MetricsHandler serves the registry's series in the Prometheus format:
// on the API port (Routes) unless Deps.MetricsElsewhere.
func (h *Handler) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(h.Registry, promhttp.HandlerOpts{})
}

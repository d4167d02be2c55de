package handler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// Gin's mode is process-wide, the binary's choice (main sets release
// mode); tests run in test mode, which prints no route table.
func init() { gin.SetMode(gin.TestMode) }

// TestRoutesLeaveGinModeAlone: building a handler and its routes changes
// no process-wide setting.
func TestRoutesLeaveGinModeAlone(t *testing.T) {
	before := gin.Mode()
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	h.Routes()
	if got := gin.Mode(); got != before {
		t.Errorf("gin mode after Routes: got %q, want %q (unchanged)", got, before)
	}
}

// TestMetricsElsewhere: with MetricsElsewhere the API has no /metrics (the
// documented 404) and MetricsHandler serves the registry.
func TestMetricsElsewhere(t *testing.T) {
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry(), MetricsElsewhere: true})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.Routes().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusNotFound || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("API /metrics: got %d %s, want 404 problem+json", w.Code, w.Header().Get("Content-Type"))
	}
	w = httptest.NewRecorder()
	h.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "seckill_purchases_total") {
		t.Errorf("MetricsHandler: got %d %.200s, want 200 with the handler's series", w.Code, w.Body)
	}
}

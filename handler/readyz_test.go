package handler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"seckill/handler/contract"
	"seckill/limiter/breaker"
)

// TestReadyzNamesFailingDependencies: /readyz answers 503 problem+json
// naming the failing dependencies (detail and "failing"), with the
// Retry-After of an open breaker, as openapi.yaml says; 200 once every
// check passes. Before, it answered one generic 503 for any failure.
func TestReadyzNamesFailingDependencies(t *testing.T) {
	var redisErr, mysqlErr, kafkaErr error
	h, err := New(Deps{AdminToken: "a", JWTSecret: benchSecret, Registry: prometheus.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checks: []Check{
			{Name: "redis", Func: func(context.Context) error { return redisErr }},
			{Name: "mysql", Func: func(context.Context) error { return mysqlErr }},
			{Name: "kafka", Func: func(context.Context) error { return kafkaErr }},
		}})
	if err != nil {
		t.Fatal(err)
	}
	serve := contract.Handler(t, h.Routes())
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		serve.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w
	}

	redisErr = &breaker.OpenError{Dependency: "redis", RetryAfter: 3 * time.Second}
	kafkaErr = errors.New("dial tcp 10.0.0.1:9092: connection refused")
	w := get()
	var p Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("readyz body %q: %v", w.Body, err)
	}
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "3" ||
		p.Code != CodeUnavailable || p.Detail != "redis, kafka unavailable" || !slices.Equal(p.Failing, []string{"redis", "kafka"}) {
		t.Errorf("readyz with redis and kafka failing: %d Retry-After %q %+v, want 503, Retry-After 3, failing [redis kafka]",
			w.Code, w.Header().Get("Retry-After"), p)
	}

	redisErr, kafkaErr = nil, nil
	if w := get(); w.Code != http.StatusOK {
		t.Errorf("readyz with every check passing: %d %s, want 200", w.Code, w.Body)
	}
}

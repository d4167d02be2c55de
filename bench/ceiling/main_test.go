package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{http.MethodGet, "/hello", http.StatusOK, `{"message":"hello"}`},
		{http.MethodGet, "/other", http.StatusNotFound, "404 page not found"},
	}
	r := Routes()
	for _, tt := range tests {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
		if w.Code != tt.wantStatus {
			t.Errorf("%s %s: got status %d, want %d", tt.method, tt.path, w.Code, tt.wantStatus)
		}
		if got := w.Body.String(); got != tt.wantBody {
			t.Errorf("%s %s: got body %q, want %q", tt.method, tt.path, got, tt.wantBody)
		}
	}
}

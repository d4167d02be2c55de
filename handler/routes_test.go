package handler

import (
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

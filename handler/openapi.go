package handler

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPISpec is the OpenAPI description of the API, served as is. It is
// embedded so the binary always serves the description of its own routes.
//
//go:embed openapi.yaml
var openAPISpec []byte

// openAPI serves the OpenAPI description at GET /openapi.yaml.
func (h *Handler) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/yaml", openAPISpec)
}

package configs_test

import "github.com/gin-gonic/gin"

// Gin's mode is process-wide, set by main in the binary; the app these
// tests boot runs in test mode, which prints no route table.
func init() { gin.SetMode(gin.TestMode) }

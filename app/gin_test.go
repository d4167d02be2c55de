package app_test

import "github.com/gin-gonic/gin"

// Gin's mode is process-wide, set by main in the binary; the tests that
// start servers here run in test mode, which prints no route table.
func init() { gin.SetMode(gin.TestMode) }

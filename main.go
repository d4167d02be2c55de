// Command seckill is the flash-sale backend: see README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"

	"seckill/app"
)

func main() {
	// Gin's mode is process-wide: the process chooses it, once, before
	// any route is built (release: no route table printed, no debug
	// warnings).
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "seckill:", err)
		os.Exit(app.ExitCode(err)) // 2 for a usage error
	}
}

package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// metricsServer serves /metrics on a listener of its own (metrics.addr),
// so that an operator can keep the series (every item in play, the
// pipeline's state) off the public API port. The Server owns it: started
// with the HTTP server, shut down and waited for with it.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve has returned
}

// listenMetrics opens metrics.addr; nil (and no error) when it is unset,
// and /metrics stays on the API port. The listener is closed with the
// server, also when Start fails after this.
func (s *Server) listenMetrics(metrics http.Handler) (*metricsServer, error) {
	cfg := s.cfg
	if cfg.Metrics.Addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Metrics.Addr, err)
	}
	s.onClose(func() { ln.Close() })
	s.MetricsAddr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	return &metricsServer{
		srv: &http.Server{Handler: mux, ReadTimeout: cfg.HTTP.ReadTimeout, WriteTimeout: cfg.HTTP.WriteTimeout,
			IdleTimeout: cfg.HTTP.IdleTimeout, ReadHeaderTimeout: cfg.HTTP.ReadTimeout},
		ln:   ln,
		done: make(chan struct{}),
	}, nil
}

// serve starts serving. The channel gets Serve's error if it fails; for no
// server it is nil, which a select never picks.
func (m *metricsServer) serve() <-chan error {
	if m == nil {
		return nil
	}
	failed := make(chan error, 1)
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	return failed
}

// shutdown stops the server (scrapes in flight finish until ctx ends) and
// waits for its goroutine. It is for a server that serve started.
func (m *metricsServer) shutdown(ctx context.Context) error {
	if m == nil {
		return nil
	}
	err := m.srv.Shutdown(ctx)
	<-m.done
	return err
}

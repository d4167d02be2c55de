package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// LeakOptions are the goroutines every leak check ignores: background
// goroutines of libraries that no owner of ours can stop.
//   - go-metrics' meter arbiter: one per process, started by the first
//     sarama client's meters and never stopped (IBM/sarama#1321).
//   - go-resiliency breaker timers of sarama's producer (below).
func LeakOptions(more ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		// sarama's producer opens a go-resiliency breaker on a partition
		// that keeps failing (a deleted topic); the breaker's timer sleeps
		// out its 10 s even after the producer is closed, holds nothing and
		// cannot be stopped from outside. A package whose last test ends
		// that way would otherwise fail on it.
		goleak.IgnoreAnyFunction("github.com/eapache/go-resiliency/breaker.(*Breaker).timer"),
	}, more...)
}

// VerifyNoLeaks runs a package's tests and then fails it if goroutines
// are left running (every goroutine has an owner that stops it and waits
// for it); use it as the package's TestMain.
func VerifyNoLeaks(m *testing.M, more ...goleak.Option) {
	goleak.VerifyTestMain(m, LeakOptions(more...)...)
}

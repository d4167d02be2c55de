package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// LeakOptions are the goroutines every leak check ignores: background
// goroutines of libraries that no owner of ours can stop.
//   - go-metrics' meter arbiter: one per process, started by the first
//     sarama client's meters and never stopped (IBM/sarama#1321).
func LeakOptions(more ...goleak.Option) []goleak.Option {
	return append([]goleak.Option{
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	}, more...)
}

// VerifyNoLeaks runs a package's tests and then fails it if goroutines
// are left running (every goroutine has an owner that stops it and waits
// for it); use it as the package's TestMain.
func VerifyNoLeaks(m *testing.M, more ...goleak.Option) {
	goleak.VerifyTestMain(m, LeakOptions(more...)...)
}

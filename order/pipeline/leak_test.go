package pipeline_test

import (
	"testing"

	"seckill/app/testenv"
)

// TestMain fails the package's tests if goroutines are left running at
// the end (testenv.LeakOptions lists the library goroutines ignored).
func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

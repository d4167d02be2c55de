package testenv

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Mem is this process's memory at one moment: the live heap after a full
// garbage collection and the resident set the OS counts (VmRSS).
type Mem struct{ Heap, RSS int64 }

// MemNow collects garbage twice (finalizers run in between) and reads the
// live heap and VmRSS; RSS is 0 where /proc is not there.
func MemNow() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return Mem{Heap: int64(ms.HeapAlloc), RSS: vmRSS()}
}

func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ReportGrowth reports what a structure holding n buyers costs, from
// before to after: the live heap it added (MB and bytes per buyer) and the
// growth of the resident set (MB), as the benchmark's own metrics.
func ReportGrowth(b *testing.B, before, after Mem, n int) {
	b.ReportMetric(float64(after.Heap-before.Heap)/(1<<20), "heap-MB")
	b.ReportMetric(float64(after.Heap-before.Heap)/float64(n), "heap-B/buyer")
	b.ReportMetric(float64(after.RSS-before.RSS)/(1<<20), "RSS-MB")
	b.ReportMetric(0, "ns/op") // one pass over the crowd: the time is not the figure
}

// CrowdMemory is the body of a crowd memory benchmark: b.N times, fill
// builds a structure holding n buyers between two readings of MemNow, and
// the growth is reported with ReportGrowth. entries, which fill returns,
// is called after the second reading (so the structure is live at it) and
// gives the entries the structure holds, reported as "entries"; it also
// releases what fill started.
func CrowdMemory(b *testing.B, n int, fill func() (entries func() int)) {
	for range b.N {
		before := MemNow()
		entries := fill()
		after := MemNow()
		ReportGrowth(b, before, after, n)
		b.ReportMetric(float64(entries()), "entries")
	}
}

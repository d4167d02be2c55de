package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEListsEnvVars: the variables README.md documents are exactly
// the ones LoadConfig reads, so neither drifts from the other.
func TestREADMEListsEnvVars(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, v := range regexp.MustCompile(`SECKILL_[A-Z_]*[A-Z]`).FindAllString(string(readme), -1) {
		documented[v] = true
	}
	read := []string{"SECKILL_CONFIG"}
	for _, o := range overrides {
		read = append(read, o.env)
	}
	for _, v := range read {
		if !documented[v] {
			t.Errorf("README.md does not document %s, which LoadConfig reads", v)
		}
	}
	for v := range documented {
		// The test suite's own variables are documented next to the test
		// command; LoadConfig never reads them.
		if strings.HasPrefix(v, "SECKILL_TEST_") {
			continue
		}
		if !slices.Contains(read, v) {
			t.Errorf("README.md documents %s, which LoadConfig does not read", v)
		}
	}
}

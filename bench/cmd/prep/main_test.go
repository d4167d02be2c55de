package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"seckill/app/apptest"
	"seckill/order/token"
)

const testSecret = apptest.JWTSecret

// TestRunAgainstApp runs prep against the real app and buys with a line of
// its output: the file is what wrk replays, so it must hold working users.
func TestRunAgainstApp(t *testing.T) {
	a := apptest.Start(t, nil)
	base := a.Base

	itemID := a.CreateItem(t, `{"name":"prep test","price_minor":1000,"currency":"EUR","stock":10,"shards":4,"per_user_limit":1}`)

	out := filepath.Join(t.TempDir(), "users.txt")
	args := []string{"-base", base, "-item", strconv.FormatInt(itemID, 10), "-n", "25", "-workers", "4", "-out", out}
	getenv := func(k string) string { return map[string]string{"SECKILL_JWT_SECRET": testSecret}[k] }
	if err := run(context.Background(), args, getenv, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]string
	seen := map[string]bool{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			t.Fatalf("line %q: got %d fields, want 2", sc.Text(), len(fields))
		}
		if seen[fields[1]] {
			t.Errorf("token %s: got it twice, want unique tokens", fields[1])
		}
		seen[fields[1]] = true
		lines = append(lines, fields)
	}
	if len(lines) != 25 {
		t.Fatalf("lines: got %d, want 25", len(lines))
	}

	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/items/"+strconv.FormatInt(itemID, 10)+"/purchase", nil)
	req.Header.Set("Authorization", "Bearer "+lines[0][0])
	req.Header.Set("Idempotency-Key", lines[0][1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("purchase with a prepared line: got status %d, want 202", resp.StatusCode)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		secret string
	}{
		{"no secret", []string{"-item", "1"}, ""},
		{"short secret", []string{"-item", "1"}, "short"},
		{"no item", []string{}, testSecret},
		{"zero users", []string{"-item", "1", "-n", "0"}, testSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "users.txt")
			getenv := func(string) string { return tt.secret }
			err := run(context.Background(), append(tt.args, "-out", out), getenv, io.Discard)
			if err == nil {
				t.Fatalf("run %v: got nil error, want one", tt.args)
			}
			if _, statErr := os.Stat(out); statErr == nil {
				t.Errorf("run %v: got an output file, want none", tt.args)
			}
		})
	}
}

// TestSignedTokens: with -sign the tokens are signed with the purchase key,
// without asking the API, for the users of the JWTs beside them.
func TestSignedTokens(t *testing.T) {
	const key = "prep-test-purchase-key-0123"
	out := filepath.Join(t.TempDir(), "users.txt")
	args := []string{"-base", "http://127.0.0.1:1", "-item", "9", "-sign", "-n", "5", "-id-base", "100", "-workers", "2", "-out", out}
	getenv := func(k string) string {
		return map[string]string{"SECKILL_JWT_SECRET": testSecret, "SECKILL_PURCHASE_KEY": key}[k]
	}
	if err := run(context.Background(), args, getenv, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	keys, err := token.NewKeys(token.Key{ID: 1, Secret: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	users := map[int64]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Fields(l)
		c, err := keys.Verify(fields[1])
		if err != nil || c.ItemID != 9 || c.UserID <= 100 || c.UserID > 105 {
			t.Fatalf("token %q: %+v, %v; want item 9, a user of 101..105", fields[1], c, err)
		}
		users[c.UserID] = true
	}
	if len(users) != 5 {
		t.Errorf("users: got %d distinct, want 5", len(users))
	}
}

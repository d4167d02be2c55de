// Command prep makes the users of a wrk purchase run: for each user it signs
// a JWT and asks the API for a purchase token, and writes one line
// "<jwt> <token>" per user. wrk cannot sign or chain requests cheaply, so the
// Lua script only walks this file.
//
// With -sign it signs the purchase tokens itself with SECKILL_PURCHASE_KEY
// (SECKILL_PURCHASE_KEY_ID, default 1), as the service would have before
// the item sold out: the sold-out crowd holds tokens from before, and the
// service issues none for an item it knows sold out.
//
//	SECKILL_JWT_SECRET=... prep -base http://127.0.0.1:18080 -item 5 -n 100000 -out users.txt
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"seckill/bench/internal/harness"
	"seckill/order/token"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "prep:", err)
		os.Exit(1)
	}
}

// Client gets purchase tokens from the API.
type Client struct {
	Base string
	HTTP *http.Client
}

// Token asks for a purchase token of the user bearing userJWT on item.
func (c *Client) Token(ctx context.Context, item int64, userJWT string) (string, error) {
	url := c.Base + "/api/v1/items/" + strconv.FormatInt(item, 10) + "/tokens"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+userJWT)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", fmt.Errorf("token response: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("token: got status %d (%s), want 201", resp.StatusCode, body)
	}
	var v struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Token == "" {
		return "", fmt.Errorf("token: bad body %q", body)
	}
	return v.Token, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("prep", flag.ContinueOnError)
	base := fs.String("base", "http://127.0.0.1:8080", "seckill base URL")
	item := fs.Int64("item", 0, "item id to get purchase tokens for")
	n := fs.Int("n", 10000, "number of users")
	idBase := fs.Int64("id-base", time.Now().Unix()%100000*100000, "first user id (users are id-base+1..id-base+n)")
	workers := fs.Int("workers", 64, "concurrent requests")
	out := fs.String("out", "users.txt", "output file: one \"<jwt> <token>\" line per user")
	ttl := fs.Duration("ttl", time.Hour, "JWT validity")
	sign := fs.Bool("sign", false, "sign the purchase tokens with SECKILL_PURCHASE_KEY instead of asking the API")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret, err := harness.UserSecret(getenv)
	if err != nil {
		return err
	}
	switch {
	case *item <= 0:
		return errors.New("-item must be a positive item id")
	case *n <= 0 || *workers <= 0:
		return errors.New("-n and -workers must be positive")
	}
	var keys *token.Keys
	if *sign {
		id, err := strconv.ParseUint(cmp.Or(getenv("SECKILL_PURCHASE_KEY_ID"), "1"), 10, 8)
		if err != nil {
			return fmt.Errorf("SECKILL_PURCHASE_KEY_ID: %w", err)
		}
		if keys, err = token.NewKeys(token.Key{ID: uint8(id), Secret: []byte(getenv("SECKILL_PURCHASE_KEY"))}); err != nil {
			return fmt.Errorf("-sign needs SECKILL_PURCHASE_KEY: %w", err)
		}
	}
	f, err := os.Create(*out)
	if err != nil {
		return fmt.Errorf("create %s: %w", *out, err)
	}
	defer f.Close()

	c := &Client{Base: *base, HTTP: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *workers, MaxConnsPerHost: *workers}}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	lines := make(chan string, *workers)
	errc := make(chan error, *workers)
	var wg sync.WaitGroup
	now := time.Now()
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				uj, err := harness.SignUser(secret, *idBase+int64(i)+1, now, *ttl)
				if err == nil {
					var tok string
					if keys != nil {
						tok, _, err = keys.Issue(*item, *idBase+int64(i)+1, now.Add(*ttl))
					} else {
						tok, err = c.Token(ctx, *item, uj)
					}
					if err == nil {
						lines <- uj + " " + tok
						continue
					}
				}
				errc <- fmt.Errorf("user %d: %w", *idBase+int64(i)+1, err)
				cancel()
				return
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range *n {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(lines) }()

	w := bufio.NewWriterSize(f, 1<<20)
	written := 0
	for l := range lines {
		fmt.Fprintln(w, l)
		written++
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	if err := ctx.Err(); err != nil && written < *n {
		return fmt.Errorf("prep: %w", err)
	}
	secs := time.Since(now).Seconds()
	fmt.Fprintf(stdout, "prep: %d users with purchase tokens for item %d in %.1fs (%.0f/s) -> %s\n",
		written, *item, secs, float64(written)/secs, *out)
	return nil
}

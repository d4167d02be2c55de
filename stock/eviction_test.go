package stock

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/app/testenv"
)

// TestCheckNoEvictionNamesThePolicy: a Redis that may evict keys is
// reported with its address and policy, as ErrEvicting; the same server set
// to noeviction passes; the shared test server (every master of a cluster)
// passes.
func TestCheckNoEvictionNamesThePolicy(t *testing.T) {
	ctx := context.Background()
	srv := testenv.PrivateRedis(t, "--maxmemory-policy", "allkeys-lru")
	c := srv.Client()
	defer c.Close()
	st := NewStore(c, Config{})

	err := st.CheckNoEviction(ctx)
	if !errors.Is(err, ErrEvicting) {
		t.Fatalf("allkeys-lru: got %v, want ErrEvicting", err)
	}
	want := "redis " + srv.Addr + ": maxmemory-policy is allkeys-lru; seckill needs noeviction: an evicting Redis drops"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want it to begin %q", err, want)
	}
	if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckNoEviction(ctx); err != nil {
		t.Errorf("noeviction: got %v, want nil", err)
	}

	shared, _ := testenv.Redis(t)
	if err := NewStore(shared, Config{}).CheckNoEviction(ctx); err != nil {
		t.Errorf("the test Redis: got %v, want nil (it must run noeviction)", err)
	}
}

// TestEvictionPolicyWithoutCONFIG: where CONFIG is disabled (managed Redis
// offerings rename it away), the policy is read from INFO memory.
func TestEvictionPolicyWithoutCONFIG(t *testing.T) {
	srv := testenv.PrivateRedis(t, "--maxmemory-policy", "volatile-ttl", "--rename-command", "CONFIG", "")
	c := srv.Client()
	defer c.Close()
	if err := c.ConfigGet(context.Background(), "maxmemory-policy").Err(); err == nil {
		t.Fatal("CONFIG GET answered: the server was meant to refuse it")
	}
	ps, err := NewStore(c, Config{}).EvictionPolicies(context.Background())
	if err != nil || len(ps) != 1 || ps[0].Policy != "volatile-ttl" || ps[0].Addr != srv.Addr {
		t.Errorf("got %+v, %v; want volatile-ttl of %s", ps, err, srv.Addr)
	}
}

// TestEvictionCheckUnreachable: a Redis that does not answer is an error,
// and not ErrEvicting (nothing is known of its policy).
func TestEvictionCheckUnreachable(t *testing.T) {
	srv := testenv.PrivateRedis(t)
	c := srv.Client()
	defer c.Close()
	srv.Stop()
	err := NewStore(c, Config{}).CheckNoEviction(context.Background())
	if err == nil || errors.Is(err, ErrEvicting) {
		t.Errorf("got %v, want a connection error that is not ErrEvicting", err)
	}
}

// TestCheckNoEvictionEveryMaster: on a Redis Cluster every master is
// checked; one evicting master is named, the others are not.
func TestCheckNoEvictionEveryMaster(t *testing.T) {
	ctx := context.Background()
	var addrs []string
	for range 3 {
		addrs = append(addrs, testenv.PrivateRedis(t, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000").Addr)
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	st := NewStore(cc, Config{})
	// The slot map may take a moment to settle on every node.
	end := time.Now().Add(20 * time.Second)
	for {
		ps, err := st.EvictionPolicies(ctx)
		if err == nil && len(ps) == 3 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("policies of 3 masters: got %+v, %v", ps, err)
		}
		cc.ReloadState(ctx)
		time.Sleep(50 * time.Millisecond)
	}
	one := redis.NewClient(&redis.Options{Addr: addrs[1]})
	defer one.Close()
	if err := one.ConfigSet(ctx, "maxmemory-policy", "allkeys-random").Err(); err != nil {
		t.Fatal(err)
	}
	err = st.CheckNoEviction(ctx)
	if !errors.Is(err, ErrEvicting) || !strings.Contains(err.Error(), "redis "+addrs[1]+": maxmemory-policy is allkeys-random") ||
		strings.Contains(err.Error(), addrs[0]) || strings.Contains(err.Error(), addrs[2]) {
		t.Errorf("one master evicting: got %v, want ErrEvicting naming %s alone", err, addrs[1])
	}
	if err := one.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckNoEviction(ctx); err != nil {
		t.Errorf("every master noeviction: got %v, want nil", err)
	}
}

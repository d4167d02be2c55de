package stock

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"seckill/app/testenv"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis starts a redis-server of the benchmark's own on a free port
// with args, and stops it (by pid) when the benchmark ends.
func privateRedis(b *testing.B, args ...string) string {
	b.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		b.Skip("redis-server not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := b.TempDir()
	cmd := exec.Command(bin, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Kill); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			b.Fatalf("redis on %s did not start", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

// privateCluster starts a 3-master Redis Cluster of the benchmark's own
// (each node with args) and returns a client of it.
func privateCluster(b *testing.B, args ...string) *redis.ClusterClient {
	b.Helper()
	var addrs []string
	for range 3 {
		addrs = append(addrs, privateRedis(b, append([]string{"--cluster-enabled", "yes", "--cluster-node-timeout", "2000"}, args...)...))
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		b.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, _ := c.ClusterInfo(context.Background()).Result()
			if contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("cluster node %s not ok: %s", a, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: 128})
}

// BenchmarkReserveDurability measures accepted purchases per second (32
// parallel buyers, 8 shards) under each durability setting of a 202, each
// on a Redis of its own, and on a 3-master Redis Cluster (AOF everysec,
// the same load):
//
//	go test -run '^$' -bench ReserveDurability -benchtime 20000x ./stock
func BenchmarkReserveDurability(b *testing.B) {
	for _, mode := range []string{"everysec", "always", "replica-wait", "cluster-everysec"} {
		b.Run(mode, func(b *testing.B) {
			var addr string
			var rdb redis.UniversalClient
			wait := 0
			switch mode {
			case "cluster-everysec":
				rdb = privateCluster(b, "--appendonly", "yes", "--appendfsync", "everysec")
			case "replica-wait":
				addr = privateRedis(b, "--appendonly", "yes", "--appendfsync", "everysec")
				host, port, _ := net.SplitHostPort(addr)
				replica := privateRedis(b, "--replicaof", host, port)
				rc := redis.NewClient(&redis.Options{Addr: replica})
				deadline := time.Now().Add(10 * time.Second)
				for {
					info, _ := rc.Info(context.Background(), "replication").Result()
					if contains(info, "master_link_status:up") {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("replica never linked")
					}
					time.Sleep(20 * time.Millisecond)
				}
				rc.Close()
				wait = 1
			default:
				addr = privateRedis(b, "--appendonly", "yes", "--appendfsync", mode)
			}
			if rdb == nil {
				rdb = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
			}
			defer rdb.Close()
			s := NewStore(rdb, Config{Prefix: "bench", WaitReplicas: wait, WaitTimeout: time.Second})
			ctx := context.Background()
			const item, shards = 1, 8
			if err := s.Warm(ctx, item, int64(b.N)+1, shards); err != nil {
				b.Fatal(err)
			}
			toks := make([]string, b.N)
			for i := range toks {
				toks[i] = testenv.TokenID()
			}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) - 1
					if _, err := s.Reserve(ctx, Purchase{ItemID: item, UserID: i + 1, Shards: shards, Limit: 1, Token: toks[i], OrderID: tid(item, i+1, shards, i+1)}); err != nil {
						b.Errorf("reserve: %v", err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "purchases/s")
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"seckill/bench/internal/harness"
)

// A private Redis Cluster of three masters without replicas, for the
// scenarios that run seckill with SECKILL_REDIS_MODE=cluster. The harness
// creates it itself (as redis-cli --cluster create would: the slots split in
// three even ranges) so that it controls every node: a master can be killed
// and restarted empty, keeping only its nodes.conf, so it rejoins with the
// same node id and slots.

const (
	clusterMasters     = 3
	clusterNodeTimeout = 2 * time.Second // cluster-node-timeout, as .ci/redis-cluster.sh
)

// rnode is one master of the cluster.
type rnode struct {
	idx    int
	port   int
	bus    int // cluster bus port
	dir    string
	gen    int    // data dirs so far
	id     string // node id, fixed at creation
	lo, hi int    // slot range
	p      *harness.Proc
}

func (n *rnode) addr() string { return harness.Addr(n.port) }

// redisCluster is the cluster of one scenario.
type redisCluster struct {
	nodes []*rnode
}

// seeds is the SECKILL_REDIS_ADDR of the apps: every master.
func (rc *redisCluster) seeds() string {
	var s []string
	for _, n := range rc.nodes {
		s = append(s, n.addr())
	}
	return strings.Join(s, ",")
}

// clusterPorts are the client and bus ports of scenario idx's cluster: the
// k-th cluster scenario uses -cluster-port-base+10k .. +2 for the clients
// and +5 .. +7 for the cluster bus (set with cluster-port: the default,
// 10000 above, falls into the kernel's ephemeral range, where an outgoing
// connection of an earlier scenario may hold it).
func clusterPorts(idx int) (client, bus []int) {
	k := 0
	for i, sc := range scenarios() {
		if i >= idx {
			break
		}
		if sc.redisCluster {
			k++
		}
	}
	for i := range clusterMasters {
		client = append(client, opt.clusterPortBase+10*k+i)
		bus = append(bus, opt.clusterPortBase+10*k+5+i)
	}
	return client, bus
}

// startNode starts n's redis-server on its current data dir and waits for
// PING.
func (c *cluster) startNode(n *rnode) error {
	rdb := redis.NewClient(&redis.Options{Addr: n.addr(), DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	p, err := harness.StartRedis(context.Background(), c.start, rdb, fmt.Sprintf("redis%d", n.idx), n.port, n.dir,
		"--appendonly", "yes", "--appendfsync", c.redisFsync(),
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(n.bus),
		"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10))
	if p != nil {
		n.p = p
	}
	return err
}

func (n *rnode) newDir(c *cluster) error {
	n.gen++
	d, err := harness.Mkdir(c.dir, fmt.Sprintf("redis%d-data-%d", n.idx, n.gen))
	if err != nil {
		return err
	}
	n.dir = d
	return nil
}

// startRedisCluster starts the masters, gives each its slot range, joins
// them and waits until every node sees the whole cluster ok.
func (c *cluster) startRedisCluster(ports, bus []int) error {
	rc := &redisCluster{}
	c.rc = rc
	for i, port := range ports {
		n := &rnode{idx: i, port: port, bus: bus[i],
			lo: i * 16384 / len(ports), hi: (i+1)*16384/len(ports) - 1}
		rc.nodes = append(rc.nodes, n)
		if err := n.newDir(c); err != nil {
			return err
		}
		if err := c.startNode(n); err != nil {
			return err
		}
	}
	for i, n := range rc.nodes {
		id, err := redisDo(n.addr(), "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("redis%d CLUSTER MYID: %w", i, err)
		}
		n.id, _ = id.(string)
		// Distinct config epochs, as redis-cli --cluster create sets them.
		if _, err := redisDo(n.addr(), "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return fmt.Errorf("redis%d CLUSTER SET-CONFIG-EPOCH: %w", i, err)
		}
		if _, err := redisDo(n.addr(), "CLUSTER", "ADDSLOTSRANGE", n.lo, n.hi); err != nil {
			return fmt.Errorf("redis%d CLUSTER ADDSLOTSRANGE %d %d: %w", i, n.lo, n.hi, err)
		}
	}
	for _, n := range rc.nodes[1:] {
		if _, err := redisDo(rc.nodes[0].addr(), "CLUSTER", "MEET", "127.0.0.1", n.port, n.bus); err != nil {
			return fmt.Errorf("CLUSTER MEET %s: %w", n.addr(), err)
		}
	}
	return c.waitClusterOK(context.Background(), 30*time.Second)
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr string
	flags    []string
	slots    []string
}

func clusterNodes(addr string) ([]clusterNode, error) {
	v, err := redisDo(addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr := f[1]
		if i := strings.IndexAny(addr, "@,"); i >= 0 {
			addr = addr[:i]
		}
		out = append(out, clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), slots: f[8:]})
	}
	return out, nil
}

// clusterOK: on every node, CLUSTER INFO says cluster_state:ok with all
// slots ok, and CLUSTER NODES shows every master with its own id and slot
// range, connected and not failing. An error says what is not so yet.
func (c *cluster) clusterOK() error {
	rc := c.rc
	for _, n := range rc.nodes {
		if !n.p.Alive() {
			return fmt.Errorf("redis%d exited; see %s", n.idx, n.p.LogPath)
		}
		v, err := redisDo(n.addr(), "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("redis%d CLUSTER INFO: %w", n.idx, err)
		}
		info, _ := v.(string)
		for _, want := range []string{"cluster_state:ok", "cluster_slots_ok:16384", fmt.Sprintf("cluster_known_nodes:%d", len(rc.nodes))} {
			if !strings.Contains(info, want) {
				return fmt.Errorf("redis%d CLUSTER INFO lacks %s", n.idx, want)
			}
		}
		view, err := clusterNodes(n.addr())
		if err != nil {
			return fmt.Errorf("redis%d CLUSTER NODES: %w", n.idx, err)
		}
		for _, m := range rc.nodes {
			var seen *clusterNode
			for i := range view {
				if view[i].addr == m.addr() {
					seen = &view[i]
				}
			}
			want := fmt.Sprintf("%d-%d", m.lo, m.hi)
			switch {
			case seen == nil:
				return fmt.Errorf("redis%d does not know %s", n.idx, m.addr())
			case seen.id != m.id:
				return fmt.Errorf("redis%d sees node id %s at %s, created as %s", n.idx, seen.id, m.addr(), m.id)
			case !contains(seen.flags, "master") || contains(seen.flags, "fail") || contains(seen.flags, "fail?") || contains(seen.flags, "handshake") || contains(seen.flags, "noaddr"):
				return fmt.Errorf("redis%d sees %s with flags %s", n.idx, m.addr(), strings.Join(seen.flags, ","))
			case len(seen.slots) != 1 || seen.slots[0] != want:
				return fmt.Errorf("redis%d sees %s serving slots %v, want %s", n.idx, m.addr(), seen.slots, want)
			}
		}
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (c *cluster) waitClusterOK(ctx context.Context, d time.Duration) error {
	return harness.WaitFor(ctx, d, 100*time.Millisecond, "redis cluster ok on every node", func() (bool, error) {
		err := c.clusterOK()
		return err == nil, err
	})
}

// shardsPerNode counts the item's stock shard keys on every master (SCAN
// of each node: what the cluster holds, not what the product says).
func (c *cluster) shardsPerNode(item int64) ([]int, error) {
	out := make([]int, len(c.rc.nodes))
	pattern := fmt.Sprintf("faults:*:%d:*:stock", item)
	for i, n := range c.rc.nodes {
		rdb := redis.NewClient(&redis.Options{Addr: n.addr(), DialTimeout: time.Second, MaxRetries: -1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		keys, err := scanAll(ctx, rdb, pattern)
		cancel()
		rdb.Close()
		if err != nil {
			return nil, fmt.Errorf("redis%d SCAN: %w", i, err)
		}
		out[i] = len(keys)
	}
	return out, nil
}

func scanAll(ctx context.Context, rdb *redis.Client, pattern string) ([]string, error) {
	var all []string
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
		if cursor = next; cursor == 0 {
			sort.Strings(all)
			return all, nil
		}
	}
}

// restartEmpty SIGKILLs master n, keeps it down for down, and starts it on
// a fresh data dir holding only its old nodes.conf: the same node id and
// slots, none of the data. It checks that the node came back empty, then
// waits until the cluster is ok again.
func (r *run) restartEmpty(ctx context.Context, n *rnode, down time.Duration) error {
	c := r.c
	old := n.dir
	r.begin(fmt.Sprintf("SIGKILL redis master %d (%s, pid %d, slots %d-%d)", n.idx, n.addr(), n.p.Pid(), n.lo, n.hi))
	n.p.Kill9()
	sleepCtx(ctx, down)
	conf, err := os.ReadFile(filepath.Join(old, "nodes.conf"))
	if err != nil {
		return fmt.Errorf("read nodes.conf of redis%d: %w", n.idx, err)
	}
	if err := n.newDir(c); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.dir, "nodes.conf"), conf, 0o644); err != nil {
		return err
	}
	r.end(fmt.Sprintf("restarting redis master %d with an empty data dir and its nodes.conf", n.idx))
	t := time.Now()
	if err := c.startNode(n); err != nil {
		return err
	}
	// Nothing can write to it before its cluster state turns ok, so the
	// key count now is what it loaded: it must be 0.
	if v, err := redisDo(n.addr(), "DBSIZE"); err != nil {
		return fmt.Errorf("redis%d DBSIZE after restart: %w", n.idx, err)
	} else if k, _ := v.(int64); k != 0 {
		return fmt.Errorf("redis%d restarted with %d keys, not empty", n.idx, k)
	}
	if v, err := redisDo(n.addr(), "CLUSTER", "MYID"); err != nil {
		return fmt.Errorf("redis%d CLUSTER MYID after restart: %w", n.idx, err)
	} else if id, _ := v.(string); id != n.id {
		return fmt.Errorf("redis%d restarted as node %s, not %s: nodes.conf not kept", n.idx, id, n.id)
	}
	if err := c.waitClusterOK(ctx, 30*time.Second); err != nil {
		return err
	}
	r.note("redis master %d restarted empty (DBSIZE 0), node id %s and slots %d-%d kept; cluster ok on every node %.1fs after the restart",
		n.idx, n.id[:8], n.lo, n.hi, time.Since(t).Seconds())
	return nil
}

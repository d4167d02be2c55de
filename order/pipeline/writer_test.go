package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"seckill/order/pipeline"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"seckill/app/testenv"
	"seckill/mq"
	"seckill/order"
	"seckill/stock"
)

// writerKafka is a broker with an orders topic and a dead-letter topic.
type writerKafka struct {
	brokers     []string
	topic, dlq  string
	producer    sarama.SyncProducer
	parts       int32
	groupPrefix string
}

func writerSetup(t *testing.T) writerKafka {
	t.Helper()
	k := writerKafka{
		brokers: testenv.Kafka(t),
		topic:   testenv.Topic("orders"), dlq: testenv.Topic("orders.dlq"),
		parts: 3, groupPrefix: "writer-" + testenv.ID(),
	}
	err := mq.EnsureTopics(context.Background(), k.brokers, mq.ProducerConfig("test"), map[string]int32{k.topic: k.parts, k.dlq: 1})
	if err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	k.producer = relayProducer(t, k.brokers)
	return k
}

func writerNew(t *testing.T, store pipeline.Inserter, k writerKafka) (*pipeline.Writer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := pipeline.NewWriter(store, pipeline.WriterConfig{
		BatchSize: 16, BatchWait: 20 * time.Millisecond,
		OrderTTL: relayOrderTTL, MaxBackoff: 200 * time.Millisecond,
	}, reg, quietLog())
	if err != nil {
		t.Fatalf("new writer: %v", err)
	}
	return w, reg
}

// writerItem creates an item in MySQL.
func writerItem(t *testing.T, s *order.Store, stockN int64) order.Item {
	t.Helper()
	it, err := s.CreateItem(context.Background(), order.Item{
		Name: "phone", Stock: stockN, Shards: 2, PerUserLimit: 1, StartsAt: time.Now(),
	})
	if err != nil {
		t.Fatalf("create item: %v", err)
	}
	return it
}

// writerReservations returns n reservations of the item with order ids
// from first on.
func writerReservations(itemID, first int64, n int) []stock.Reservation {
	out := make([]stock.Reservation, n)
	for i := range out {
		id := first + int64(i)
		out[i] = stock.Reservation{OrderID: id, ItemID: itemID, UserID: 5000 + id, Shard: int(id % 2), Home: int(id % 2), At: time.Now()}
	}
	return out
}

func writerSend(t *testing.T, k writerKafka, rs []stock.Reservation) {
	t.Helper()
	msgs := make([]*sarama.ProducerMessage, len(rs))
	for i, r := range rs {
		key, value := pipeline.EncodeReservation(r)
		msgs[i] = &sarama.ProducerMessage{Topic: k.topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)}
	}
	if err := k.producer.SendMessages(msgs); err != nil {
		t.Fatalf("send: %v", err)
	}
}

func writerSendRaw(t *testing.T, k writerKafka, key, value string) {
	t.Helper()
	_, _, err := k.producer.SendMessage(&sarama.ProducerMessage{Topic: k.topic, Key: sarama.StringEncoder(key), Value: sarama.StringEncoder(value)})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
}

// writerRun runs handler h in consumer group `group` until stop is called;
// stop closes the group like a process that exits.
func writerRun(t *testing.T, k writerKafka, group string, h sarama.ConsumerGroupHandler) (stop func()) {
	t.Helper()
	g, err := sarama.NewConsumerGroup(k.brokers, group, mq.ConsumerConfig("test", 6*time.Second))
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mq.RunGroup(ctx, g, []string{k.topic}, h, quietLog()) }()
	// A writer's acknowledgement retries run as long as its group.
	acker := make(chan struct{})
	if w, ok := h.(interface{ Run(context.Context) }); ok {
		go func() { defer close(acker); w.Run(ctx) }()
	} else {
		close(acker)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunGroup: got %v, want nil", err)
		}
		<-acker
		if err := g.Close(); err != nil {
			t.Errorf("close group: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// writerOffsets returns the group's committed offset and the end offset of
// every partition of the topic (-1: nothing committed).
func writerOffsets(t *testing.T, k writerKafka, group string) (committed, end []int64) {
	t.Helper()
	client, err := sarama.NewClient(k.brokers, mq.ConsumerConfig("test-offsets", 0))
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	parts := make([]int32, k.parts)
	for i := range parts {
		parts[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{k.topic: parts})
	if err != nil {
		t.Fatalf("group offsets: %v", err)
	}
	for _, p := range parts {
		c := int64(-1)
		if b := resp.GetBlock(k.topic, p); b != nil {
			c = b.Offset
		}
		e, err := client.GetOffset(k.topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("end offset: %v", err)
		}
		committed, end = append(committed, c), append(end, e)
	}
	return committed, end
}

// writerCaughtUp reports whether the group committed every partition up to
// its end (an empty partition counts as caught up).
func writerCaughtUp(t *testing.T, k writerKafka, group string) bool {
	t.Helper()
	committed, end := writerOffsets(t, k, group)
	for i := range end {
		if end[i] > 0 && committed[i] != end[i] {
			return false
		}
	}
	return true
}

func writerRows(t *testing.T, db *sqlx.DB, itemID int64) int64 {
	t.Helper()
	var n int64
	if err := db.Get(&n, "SELECT COUNT(*) FROM orders WHERE item_id = ?", itemID); err != nil {
		t.Fatalf("count orders: %v", err)
	}
	return n
}

func writerSold(t *testing.T, s *order.Store, itemID int64) int64 {
	t.Helper()
	it, err := s.Item(context.Background(), itemID)
	if err != nil {
		t.Fatalf("get item: %v", err)
	}
	return it.Sold
}

// TestWriterInsertsOnce: N messages make N rows, and the same messages
// delivered again make none.
func TestWriterInsertsOnce(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 1000)
	const n = 60
	rs := writerReservations(it.ID, 1, n)
	w, reg := writerNew(t, store, k)
	group := k.groupPrefix
	writerRun(t, k, group, w)

	writerSend(t, k, rs)
	eventually(t, 20*time.Second, "first delivery stored and committed", func() bool {
		return writerRows(t, db, it.ID) == n && writerCaughtUp(t, k, group)
	})
	writerSend(t, k, rs) // a redelivery, as after a relay crash
	eventually(t, 20*time.Second, "redelivery committed", func() bool { return writerCaughtUp(t, k, group) })

	if got := writerRows(t, db, it.ID); got != n {
		t.Errorf("rows after redelivery: got %d, want %d", got, n)
	}
	if got := writerSold(t, store, it.ID); got != n {
		t.Errorf("items.sold after redelivery: got %d, want %d", got, n)
	}
	for _, tc := range []struct {
		metric string
		want   float64
	}{
		{"seckill_consumer_orders_total", n},
		{"seckill_consumer_lag", 0},
		{"seckill_db_guard_refusals_total", 0},
		{"seckill_dlq_messages_total", 0},
		{"seckill_consumer_errors_total", 0},
	} {
		if got := metricValue(t, reg, tc.metric); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.metric, got, tc.want)
		}
	}
	if got := metricValue(t, reg, "seckill_consumer_batch_size"); got < 2 {
		t.Errorf("batches observed: got %v, want >= 2", got)
	}
	if got := metricValue(t, reg, "seckill_consumer_commit_duration_seconds"); got < 2 {
		t.Errorf("transactions observed: got %v, want >= 2", got)
	}
}

// forgetfulSession drops marks and commits: the process dies after the
// rows are committed in MySQL and before Kafka hears of it.
type forgetfulSession struct{ sarama.ConsumerGroupSession }

func (forgetfulSession) MarkMessage(*sarama.ConsumerMessage, string) {}
func (forgetfulSession) Commit()                                     {}

type forgetful struct{ *pipeline.Writer }

func (f forgetful) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	return f.Writer.ConsumeClaim(forgetfulSession{s}, c)
}

func TestWriterCrashBeforeMark(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 1000)
	const n = 40
	writerSend(t, k, writerReservations(it.ID, 1, n))
	group := k.groupPrefix

	w1, _ := writerNew(t, store, k)
	stop := writerRun(t, k, group, forgetful{w1})
	eventually(t, 20*time.Second, "rows stored by the first writer", func() bool { return writerRows(t, db, it.ID) == n })
	stop()
	committed, _ := writerOffsets(t, k, group)
	for p, c := range committed {
		if c != -1 {
			t.Fatalf("partition %d committed at %d by a writer that never marked, want -1", p, c)
		}
	}

	// The restarted writer reads everything again.
	w2, reg2 := writerNew(t, store, k)
	writerRun(t, k, group, w2)
	eventually(t, 20*time.Second, "restarted writer caught up", func() bool { return writerCaughtUp(t, k, group) })
	if got := writerRows(t, db, it.ID); got != n {
		t.Errorf("rows after restart: got %d, want %d", got, n)
	}
	if got := writerSold(t, store, it.ID); got != n {
		t.Errorf("items.sold after restart: got %d, want %d", got, n)
	}
	if got := metricValue(t, reg2, "seckill_consumer_orders_total"); got != 0 {
		t.Errorf("rows inserted by the restarted writer: got %v, want 0", got)
	}
	if got := metricValue(t, reg2, "seckill_consumer_batch_size"); got < 1 {
		t.Errorf("batches handled by the restarted writer: got %v, want >= 1", got)
	}
}

// tcpGate forwards TCP connections to a server while open; while shut it
// refuses new connections and has cut the live ones: to its clients, the
// server is down.
type tcpGate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   bool
	conns  map[net.Conn]bool
}

func newTCPGate(t *testing.T, target string) *tcpGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := &tcpGate{ln: ln, target: target, open: true, conns: map[net.Conn]bool{}}
	go g.serve()
	t.Cleanup(func() { ln.Close(); g.set(false) })
	return g
}

func (g *tcpGate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		go g.forward(c)
	}
}

func (g *tcpGate) forward(c net.Conn) {
	g.mu.Lock()
	if !g.open {
		g.mu.Unlock()
		c.Close()
		return
	}
	s, err := net.Dial("tcp", g.target)
	if err != nil {
		g.mu.Unlock()
		c.Close()
		return
	}
	g.conns[c], g.conns[s] = true, true
	g.mu.Unlock()
	go func() { io.Copy(s, c); s.Close(); c.Close() }()
	io.Copy(c, s)
	c.Close()
	s.Close()
	g.mu.Lock()
	delete(g.conns, c)
	delete(g.conns, s)
	g.mu.Unlock()
}

func (g *tcpGate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
	if !open {
		for c := range g.conns {
			c.Close()
		}
	}
}

// TestWriterMySQLDown: while MySQL is unreachable the writer retries the
// same batch and commits no offset past it; once MySQL is back every row
// lands, once.
func TestWriterMySQLDown(t *testing.T) {
	k := writerSetup(t)
	dsn, db := testenv.MySQL(t)
	it := writerItem(t, order.NewStore(db), 1000)

	// The writer reaches MySQL through a gate the test can shut.
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse dsn: %v", err)
	}
	gate := newTCPGate(t, cfg.Addr)
	cfg.Addr = gate.ln.Addr().String()
	cfg.Timeout = time.Second
	gated, err := sqlx.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatalf("open gated db: %v", err)
	}
	t.Cleanup(func() { gated.Close() })
	w, reg := writerNew(t, order.NewStore(gated), k)
	group := k.groupPrefix
	writerRun(t, k, group, w)

	writerSend(t, k, writerReservations(it.ID, 1, 10))
	eventually(t, 20*time.Second, "rows while MySQL is up", func() bool {
		return writerRows(t, db, it.ID) == 10 && writerCaughtUp(t, k, group)
	})

	gate.set(false)
	const n = 40
	writerSend(t, k, writerReservations(it.ID, 11, n-10))
	eventually(t, 20*time.Second, "failed inserts", func() bool {
		return metricValue(t, reg, "seckill_consumer_errors_total") >= 3
	})
	if writerCaughtUp(t, k, group) {
		t.Fatal("offsets committed up to the end while MySQL was down")
	}
	if got := writerRows(t, db, it.ID); got != 10 {
		t.Fatalf("rows while MySQL is down: got %d, want 10", got)
	}

	gate.set(true)
	eventually(t, 20*time.Second, "all rows after MySQL is back", func() bool {
		return writerRows(t, db, it.ID) == n && writerCaughtUp(t, k, group)
	})
	if got := metricValue(t, reg, "seckill_consumer_orders_total"); got != n {
		t.Errorf("orders_total: got %v, want %d", got, n)
	}
	if got := metricValue(t, reg, "seckill_dlq_messages_total"); got != 0 {
		t.Errorf("dead letters: got %v, want 0", got)
	}
}

// TestWriterDeadLetters: undecodable messages and orders the MySQL stock
// guard refuses go to the dead-letter topic; the rest land.
func TestWriterDeadLetters(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 3)
	w, reg := writerNew(t, store, k)
	group := k.groupPrefix
	writerRun(t, k, group, w)

	// Fill the stock first, so the guard refuses exactly the extra orders
	// however the writer batches them.
	writerSend(t, k, writerReservations(it.ID, 1, 3))
	eventually(t, 20*time.Second, "stock filled", func() bool {
		return writerRows(t, db, it.ID) == 3 && writerCaughtUp(t, k, group)
	})
	writerSendRaw(t, k, "x", "not json")
	writerSend(t, k, writerReservations(it.ID, 4, 2)) // orders 4 and 5: past the stock
	writerSendRaw(t, k, fmt.Sprint(it.ID), `{"order_id":"0","item_id":1,"user_id":1,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`)
	eventually(t, 20*time.Second, "all handled", func() bool { return writerCaughtUp(t, k, group) })

	if got := writerRows(t, db, it.ID); got != 3 {
		t.Errorf("rows: got %d, want 3", got)
	}
	if got := writerSold(t, store, it.ID); got != 3 {
		t.Errorf("items.sold: got %d, want 3", got)
	}
	byReason := map[string][]string{}
	var dls []struct {
		Reason  string `db:"reason"`
		OrderID *int64 `db:"order_id"`
		Payload []byte `db:"payload"`
	}
	if err := db.Select(&dls, "SELECT reason, order_id, payload FROM dead_letters"); err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		v := string(d.Payload)
		if d.Reason == order.ReasonOversell {
			if d.OrderID == nil {
				t.Fatalf("oversell dead letter without its order id: %s", v)
			}
			v = fmt.Sprint(*d.OrderID)
		}
		byReason[d.Reason] = append(byReason[d.Reason], v)
	}
	for reason := range byReason {
		slices.Sort(byReason[reason])
	}
	want := map[string][]string{
		order.ReasonDecode:   {"not json", `{"order_id":"0","item_id":1,"user_id":1,"shard":0,"home":0,"reserved_at":"2030-01-01T00:00:00Z"}`},
		order.ReasonOversell: {"4", "5"},
	}
	if fmt.Sprint(byReason) != fmt.Sprint(want) {
		t.Errorf("dead letters by reason: got %v, want %v", byReason, want)
	}
	for _, tc := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"seckill_db_guard_refusals_total", nil, 2},
		{"seckill_dlq_messages_total", []string{"reason", order.ReasonDecode}, 2},
		{"seckill_dlq_messages_total", []string{"reason", order.ReasonOversell}, 2},
		{"seckill_consumer_orders_total", nil, 3},
	} {
		if got := metricValue(t, reg, tc.metric, tc.labels...); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
}

func TestNewWriterNeedsTTL(t *testing.T) {
	_, err := pipeline.NewWriter(nil, pipeline.WriterConfig{}, prometheus.NewRegistry(), quietLog())
	if err == nil {
		t.Fatal("NewWriter without an order TTL: got nil error, want one")
	}
}

// TestWriterAcksEndWithTheWriter: acknowledgements that fail (Redis gone:
// here a closed client) are retried in the background, but only while the
// writer runs: once it stopped, no goroutine of its is left and no Redis
// call is made. Before, every failed batch started a goroutine of its own
// that slept and retried for two minutes, on a client already closed.
func TestWriterAcksEndWithTheWriter(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	var afterStop, retried atomic.Int64
	var stopped atomic.Bool
	var mu sync.Mutex
	tries := map[*stock.Entry]int{} // by batch: a retry passes the same entries
	// Registered first, so it runs last: after the group, the broker and
	// MySQL were closed.
	t.Cleanup(func() {
		if err := goleak.Find(testenv.LeakOptions(leaks)...); err != nil {
			t.Errorf("goroutines left after the writer stopped: %v", err)
		}
		if n := afterStop.Load(); n > 0 {
			t.Errorf("%d acknowledgements sent to Redis after the writer stopped", n)
		}
	})
	gone := testenv.NewRedis(redis.Options{})
	gone.Close()

	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 1000)
	w, err := pipeline.NewWriter(store, pipeline.WriterConfig{
		BatchSize: 4, BatchWait: 5 * time.Millisecond, OrderTTL: relayOrderTTL,
		Ack: func(ctx context.Context, entries []stock.Entry) error {
			mu.Lock()
			if tries[&entries[0]]++; tries[&entries[0]] == 2 {
				retried.Add(1)
			}
			mu.Unlock()
			if stopped.Load() {
				afterStop.Add(1)
			}
			return gone.Ping(ctx).Err()
		},
	}, prometheus.NewRegistry(), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	group := k.groupPrefix
	stop := writerRun(t, k, group, w)
	const n = 20
	writerSend(t, k, writerReservations(it.ID, 1, n))
	eventually(t, 20*time.Second, "rows stored and a retried ack", func() bool {
		return writerRows(t, db, it.ID) == n && writerCaughtUp(t, k, group) && retried.Load() > 0
	})
	stop()
	stopped.Store(true)
}

// TestWriterAckQueueFull: with the retry queue full (here nobody runs the
// retries), a failed acknowledgement is counted and logged, not kept
// waiting: the writer goes on, and the relay's resend covers the entries.
func TestWriterAckQueueFull(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 1000)
	reg := prometheus.NewRegistry()
	w, err := pipeline.NewWriter(store, pipeline.WriterConfig{
		BatchSize: 4, BatchWait: 5 * time.Millisecond, OrderTTL: relayOrderTTL, AckQueue: 1,
		Ack: func(context.Context, []stock.Entry) error { return errors.New("test: redis away") },
	}, reg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	group := k.groupPrefix
	writerRun(t, k, group, noAcker{w})
	const n = 20
	writerSend(t, k, writerReservations(it.ID, 1, n))
	eventually(t, 20*time.Second, "rows stored, acks given up", func() bool {
		return writerRows(t, db, it.ID) == n && writerCaughtUp(t, k, group) &&
			metricValue(t, reg, "seckill_consumer_acks_left_total") >= 1
	})
}

// noAcker hides the writer's Run: nobody retries its acknowledgements.
type noAcker struct{ sarama.ConsumerGroupHandler }

// TestWriterLagGoesWithTheClaim: a partition's lag series exists while the
// writer holds its claim and is deleted when the claim ends, so a
// partition that moved to another instance is not reported here for ever.
func TestWriterLagGoesWithTheClaim(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	it := writerItem(t, store, 1000)
	w, reg := writerNew(t, store, k)
	group := k.groupPrefix
	stop := writerRun(t, k, group, w)
	const n = 30
	writerSend(t, k, writerReservations(it.ID, 1, n))
	eventually(t, 20*time.Second, "rows stored", func() bool {
		return writerRows(t, db, it.ID) == n && writerCaughtUp(t, k, group)
	})
	if got := metricSeries(t, reg, "seckill_consumer_lag"); got == 0 {
		t.Fatal("no lag series while the writer holds its claims")
	}
	stop()
	if got := metricSeries(t, reg, "seckill_consumer_lag"); got != 0 {
		t.Errorf("%d lag series left after every claim ended, want 0", got)
	}
}

// metricSeries is the number of series of a metric.
func metricSeries(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

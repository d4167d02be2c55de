package pipeline_test

import (
	"testing"
	"time"

	"seckill/app/testenv"
	"seckill/order"
	"seckill/stock"
)

// An order whose id is already another buyer's order is a dead letter
// (reason id_collision) and a counted collision; a redelivery of the
// stored order is neither.
func TestWriterIDCollision(t *testing.T) {
	k := writerSetup(t)
	_, db := testenv.MySQL(t)
	store := order.NewStore(db)
	a, b := writerItem(t, store, 10), writerItem(t, store, 10)
	w, reg := writerNew(t, store, k)
	group := k.groupPrefix
	writerRun(t, k, group, w)

	r := func(id, item, user int64) stock.Reservation {
		return stock.Reservation{OrderID: id, ItemID: item, UserID: user, Shard: 0, Home: 0, At: time.Now()}
	}
	writerSend(t, k, []stock.Reservation{r(1, a.ID, 701)})
	eventually(t, 20*time.Second, "order 1 stored", func() bool {
		return writerRows(t, db, a.ID) == 1 && writerCaughtUp(t, k, group)
	})
	// The same order again (a redelivery), and order 1 of another buyer
	// of each item (an id made twice).
	writerSend(t, k, []stock.Reservation{r(1, a.ID, 701), r(1, a.ID, 702), r(1, b.ID, 703)})
	eventually(t, 20*time.Second, "all handled", func() bool { return writerCaughtUp(t, k, group) })

	var dls []struct {
		Reason string `db:"reason"`
		User   int64  `db:"user_id"`
	}
	if err := db.Select(&dls, "SELECT reason, user_id FROM dead_letters ORDER BY user_id"); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].User != 702 || dls[1].User != 703 ||
		dls[0].Reason != order.ReasonIDCollision || dls[1].Reason != order.ReasonIDCollision {
		t.Errorf("dead letters: got %+v, want id_collision for users 702 and 703", dls)
	}
	if got := writerRows(t, db, a.ID) + writerRows(t, db, b.ID); got != 1 {
		t.Errorf("rows: got %d, want 1", got)
	}
	if got := writerSold(t, store, a.ID) + writerSold(t, store, b.ID); got != 1 {
		t.Errorf("sold: got %d, want 1", got)
	}
	for _, tc := range []struct {
		metric string
		labels []string
		want   float64
	}{
		{"seckill_order_id_collisions_total", nil, 2},
		{"seckill_dlq_messages_total", []string{"reason", order.ReasonIDCollision}, 2},
		{"seckill_dlq_messages_total", []string{"reason", order.ReasonOversell}, 0},
		{"seckill_db_guard_refusals_total", nil, 0},
		{"seckill_consumer_orders_total", nil, 1},
	} {
		if got := metricValue(t, reg, tc.metric, tc.labels...); got != tc.want {
			t.Errorf("%s%v: got %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
}

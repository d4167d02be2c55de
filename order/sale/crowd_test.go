package sale

import (
	"encoding/binary"
	"testing"

	"seckill/app/testenv"
	"seckill/stock"
)

// crowd is how many distinct buyers BenchmarkCrowdMemory sends through the
// memories a sale keeps.
const crowd = 1_000_000

// crowdKey is buyer i's purchase key, as a token the service issued.
func crowdKey(i int) acceptedKey {
	k := acceptedKey{item: 1, user: int64(i) + 1}
	binary.LittleEndian.PutUint64(k.key[:], uint64(i)+1)
	return k
}

// BenchmarkCrowdMemory: the memory of answers after a million distinct
// buyers got a final answer on one instance: what it holds (entries, live
// heap) and what the process's resident set grew by, discarded generations
// included. Run with -benchtime 1x (bench/README.md).
func BenchmarkCrowdMemory(b *testing.B) {
	b.Run("answers", func(b *testing.B) {
		testenv.CrowdMemory(b, crowd, func() func() int {
			m := NewRecent[acceptedKey, answer](answerMemory)
			for i := range crowd {
				m.Add(crowdKey(i), answer{refusal: refusedSoldOut})
			}
			return func() int { return len(m.cur) + len(m.prev) }
		})
	})
	// A retry whose answer fell out of memory: what it costs in Redis,
	// for a 202 and for a sold-out answer, and that it is remembered again.
	b.Run("retry-forgotten", func(b *testing.B) {
		for range b.N {
			var calls, retries int64
			for _, r := range forgottenRetries(b) {
				calls += r.calls
				retries++
			}
			b.ReportMetric(float64(calls)/float64(retries), "redis-calls/retry")
			b.ReportMetric(0, "ns/op")
		}
	})
}

// forgottenRetry is one retried key whose answer had left the memory of
// answers: the Redis round trips of the retry, and of the one after it.
type forgottenRetry struct {
	what         string
	calls, again int64
	sameAnswer   bool
}

// forgottenRetries sells one unit to a buyer and refuses a second buyer
// (sold out), pushes both answers out of the memory of answers with more
// than two generations of other keys, and retries both keys.
func forgottenRetries(tb testing.TB) []forgottenRetry {
	e, s := newEnv(tb, 1, idsFunc(func(g int) (int64, error) { return stock.WithGroup(int64(1)<<40, g), nil }))
	type buyer struct {
		what string
		user int64
		key  string
		id   int64
		err  error
	}
	buyers := []*buyer{{what: "202", user: 7}, {what: "sold_out", user: 8}}
	// Both tokens first: none is issued for an item known sold out.
	for _, u := range buyers {
		tok, err := s.IssueToken(e.ctx, e.item.ID, u.user)
		if err != nil {
			tb.Fatal(err)
		}
		u.key = tok.Token
	}
	for _, u := range buyers {
		u.id, u.err = s.Purchase(e.ctx, e.item.ID, u.user, u.key)
	}
	if buyers[0].err != nil || buyers[1].err != ErrSoldOut {
		tb.Fatalf("first answers: %v, %v; want a 202 and ErrSoldOut", buyers[0].err, buyers[1].err)
	}
	for i := range 2*answerMemory + 1 {
		s.answers.Add(crowdKey(i), answer{refusal: refusedSoldOut})
	}
	var out []forgottenRetry
	for _, u := range buyers {
		if _, ok := s.answers.Get(acceptedKey{item: e.item.ID, user: u.user, key: mustTokenBytes(tb, s, u.key)}); ok {
			tb.Fatalf("%s: the answer is still in memory", u.what)
		}
		r := forgottenRetry{what: u.what}
		before := e.rt.N.Load()
		id, err := s.Purchase(e.ctx, e.item.ID, u.user, u.key)
		r.calls = e.rt.N.Load() - before
		r.sameAnswer = id == u.id && err == u.err
		before = e.rt.N.Load()
		if id2, err2 := s.Purchase(e.ctx, e.item.ID, u.user, u.key); id2 != id || err2 != err {
			r.sameAnswer = false
		}
		r.again = e.rt.N.Load() - before
		out = append(out, r)
	}
	return out
}

// mustTokenBytes is the id a purchase token stands for in the memory of
// answers.
func mustTokenBytes(tb testing.TB, s *Sale, key string) [16]byte {
	c, err := s.cfg.Tokens.Verify(key)
	if err != nil {
		tb.Fatalf("token %q is not as IssueToken makes them: %v", key, err)
	}
	return c.ID
}

// TestForgottenAnswerCostsOneRedisCall: the memory of answers is bounded,
// so a retry whose answer fell out of it must still get the same answer,
// for one Redis call (the key's stored answer), and be remembered again.
func TestForgottenAnswerCostsOneRedisCall(t *testing.T) {
	for _, r := range forgottenRetries(t) {
		if !r.sameAnswer {
			t.Errorf("%s: a retry after the answer was forgotten got another answer", r.what)
		}
		if r.calls != 1 || r.again != 0 {
			t.Errorf("%s: Redis round trips of the retry, then the next: got %d, %d; want 1, 0", r.what, r.calls, r.again)
		}
	}
}

package breaker

import (
	"context"
	"database/sql/driver"
)

// Connector guards a database/sql driver with b: connecting, and each
// statement (exec, query, prepare, begin, ping) of its connections. While b
// is open they fail at once with an *OpenError, which database/sql returns
// as it is (it retries only driver.ErrBadConn). Use it with sql.OpenDB.
func Connector(b *Breaker, c driver.Connector) driver.Connector {
	if b == nil {
		return c
	}
	return connector{c: c, b: b}
}

type connector struct {
	c driver.Connector
	b *Breaker
}

func (c connector) Driver() driver.Driver { return c.c.Driver() }

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	done, err := c.b.Allow()
	if err != nil {
		return nil, err
	}
	cn, err := c.c.Connect(ctx)
	done(Classify(err))
	if err != nil {
		return nil, err
	}
	return &conn{c: cn, b: c.b}, nil
}

// conn is a guarded connection. It offers every optional interface of
// database/sql; those the driver's connection lacks answer as database/sql
// expects of a connection without them (driver.ErrSkip, no check).
type conn struct {
	c driver.Conn
	b *Breaker
}

var (
	_ driver.ConnBeginTx         = (*conn)(nil)
	_ driver.ConnPrepareContext  = (*conn)(nil)
	_ driver.ExecerContext       = (*conn)(nil)
	_ driver.QueryerContext      = (*conn)(nil)
	_ driver.Pinger              = (*conn)(nil)
	_ driver.SessionResetter     = (*conn)(nil)
	_ driver.Validator           = (*conn)(nil)
	_ driver.NamedValueChecker   = (*conn)(nil)
	_ driver.Connector           = connector{}
	_ interface{ Close() error } = (*conn)(nil)
)

// guard runs fn under the breaker.
func guard[T any](b *Breaker, fn func() (T, error)) (T, error) {
	done, err := b.Allow()
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := fn()
	done(Classify(err))
	return v, err
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) Close() error { return c.c.Close() }

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return guard(c.b, func() (driver.Tx, error) {
		if bt, ok := c.c.(driver.ConnBeginTx); ok {
			return bt.BeginTx(ctx, opts)
		}
		return c.c.Begin() //nolint:staticcheck // the driver has nothing else
	})
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return guard(c.b, func() (driver.Stmt, error) {
		if p, ok := c.c.(driver.ConnPrepareContext); ok {
			return p.PrepareContext(ctx, query)
		}
		return c.c.Prepare(query)
	})
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.c.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return guard(c.b, func() (driver.Result, error) { return e.ExecContext(ctx, query, args) })
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.c.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	return guard(c.b, func() (driver.Rows, error) { return q.QueryContext(ctx, query, args) })
}

func (c *conn) Ping(ctx context.Context) error {
	p, ok := c.c.(driver.Pinger)
	if !ok {
		return nil
	}
	_, err := guard(c.b, func() (struct{}, error) { return struct{}{}, p.Ping(ctx) })
	return err
}

func (c *conn) ResetSession(ctx context.Context) error {
	if r, ok := c.c.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *conn) IsValid() bool {
	if v, ok := c.c.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.c.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

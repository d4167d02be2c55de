package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	sqle "github.com/dolthub/go-mysql-server"
	"github.com/dolthub/go-mysql-server/memory"
	"github.com/dolthub/go-mysql-server/server"
	"github.com/dolthub/go-mysql-server/sql"
	wire "github.com/dolthub/vitess/go/mysql"
	"github.com/dolthub/vitess/go/sqltypes"
	querypb "github.com/dolthub/vitess/go/vt/proto/query"
)

// lockWait is how long a statement waits for another connection's
// transaction to finish before failing with error 1205.
const lockWait = 10 * time.Second

// MySQL starts github.com/dolthub/go-mysql-server with an empty in-memory
// database named db on 127.0.0.1:<free port>, accepting user root with no
// password, and returns a go-sql-driver DSN for it:
// "root@tcp(127.0.0.1:PORT)/db?parseTime=true". Apply the schema with
// migrations.Up as against a real server.
//
// Three defects of the in-memory engine are worked around here:
//   - It commits a transaction by writing back every table it touched, so
//     concurrent transactions silently lose each other's rows. Statements
//     therefore run one transaction at a time (see gate); one that waits
//     longer than 10s fails with MySQL error 1205 (lock wait timeout), as
//     behind InnoDB row locks, so callers that retry 1205 retry it. Unlike
//     InnoDB, a plain read also waits for an open transaction.
//   - A rolled-back write can leave the committed table's secondary indexes
//     pointing at the wrong rows, so index lookups miss rows. After any
//     transaction that rolled back or failed, unique secondary indexes are
//     rebuilt before the next statement runs.
//   - Every write costs time proportional to rows x secondary indexes (a
//     single UPDATE of a 10,000-row orders table took 2.8s). Non-unique
//     secondary indexes change no result, only speed, so they are dropped
//     after every CREATE/ALTER: queries scan instead.
//
// Also unlike MariaDB, DATETIME(3) rounds sub-millisecond input instead of
// truncating it; callers that truncate in Go (order.Store does) see no
// difference. Writes still slow down as tables grow (10,000 orders took
// about 14s to insert): dev mode is for trying the system, not for load.
func MySQL(db string) (dsn string, stop func(), err error) {
	return startMySQL(db, lockWait)
}

// startMySQL is MySQL with the lock wait timeout as a parameter.
func startMySQL(db string, wait time.Duration) (dsn string, stop func(), err error) {
	if db == "" {
		return "", nil, errors.New("start embedded mysql: empty database name")
	}
	mdb := memory.NewDatabase(db)
	// Without this, primary keys are not used as indexes: every lookup by
	// order_id would scan the table.
	mdb.BaseDatabase.EnablePrimaryKeyIndexes()
	pro := memory.NewDBProvider(mdb)
	engine := sqle.NewDefault(pro)

	// Our own listener: the port is chosen and held by the kernel, with no
	// probe-then-bind race, and closing it releases the port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		engine.Close()
		return "", nil, fmt.Errorf("start embedded mysql: listen: %w", err)
	}
	g := &gate{
		sem:    make(chan struct{}, 1),
		wait:   wait,
		repair: func() error { return fixIndexes(engine, pro, db) },
	}
	srv, err := server.NewServerWithHandler(server.Config{
		Protocol: "tcp",
		Address:  ln.Addr().String(),
		Listener: ln,
	}, engine, sql.NewContext, memory.NewSessionBuilder(pro), nil,
		func(h wire.Handler) (wire.Handler, error) { return &gatedHandler{Handler: h, gate: g}, nil })
	if err != nil {
		ln.Close()
		engine.Close()
		return "", nil, fmt.Errorf("start embedded mysql: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Start() // accepts until Close; always returns nil
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			<-done // the accept loop is gone, so the port is free
			engine.Close()
		})
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s?parseTime=true", port, db), stop, nil
}

// gate lets one connection at a time run statements, from its first
// statement until its transaction ends: a global lock, i.e. serializable
// isolation, which is what the memory engine needs to be correct. sem holds
// the one slot; holder is the connection in it.
type gate struct {
	sem    chan struct{}
	wait   time.Duration
	repair func() error

	mu     sync.Mutex
	holder *wire.Conn
	// dirty: the holder's transaction may have rolled back writes, or
	// changed the schema, so the indexes are fixed before anyone else runs.
	dirty bool
	// broken is set when fixing failed: the indexes can no longer be
	// trusted, so every later statement fails rather than answer wrongly.
	broken error
}

// enter blocks until c holds the gate (at once if it already does).
func (g *gate) enter(ctx context.Context, c *wire.Conn) error {
	g.mu.Lock()
	held, broken := g.holder == c, g.broken
	g.mu.Unlock()
	if broken != nil {
		return broken
	}
	if held {
		return nil
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.sem <- struct{}{}:
	case <-t.C:
		return wire.NewSQLError(wire.ERLockWaitTimeout, "HY000", "Lock wait timeout exceeded; try restarting transaction")
	case <-ctx.Done():
		return ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken != nil {
		<-g.sem
		return g.broken
	}
	g.holder = c
	return nil
}

// leave ends a statement of c. It keeps the gate while c is inside a
// transaction (the handler updates c.StatusFlags after every statement, on
// this goroutine) unless force: the connection is gone or was reset, and
// its transaction with it. dirty says the statement failed, was a ROLLBACK
// or changed the schema. The error is that of a failed index fix.
func (g *gate) leave(c *wire.Conn, dirty, force bool) error {
	g.mu.Lock()
	if g.holder != c {
		g.mu.Unlock()
		return nil
	}
	if dirty {
		g.dirty = true
	}
	if !force && c.StatusFlags&wire.ServerInTransaction != 0 {
		g.mu.Unlock()
		return nil // BEGIN ... still open: keep others out until it ends
	}
	dirty = g.dirty || force
	g.mu.Unlock()

	// Still holding sem: nobody else runs while the indexes are fixed.
	var err error
	if dirty {
		if err = g.repair(); err != nil {
			err = fmt.Errorf("embedded mysql: fix indexes: %w", err)
		}
	}
	g.mu.Lock()
	if err != nil {
		g.broken = err
	}
	g.holder, g.dirty = nil, false
	g.mu.Unlock()
	<-g.sem
	return err
}

// gatedHandler runs every statement of the wrapped handler inside the gate.
type gatedHandler struct {
	wire.Handler
	gate *gate
}

// done ends a statement: err is the statement's own error, which wins over
// an index fix error.
func (h *gatedHandler) done(c *wire.Conn, err error, query string) error {
	if lerr := h.gate.leave(c, err != nil || needsFix(query), false); err == nil {
		err = lerr
	}
	return err
}

// needsFix reports whether query is a ROLLBACK, which may leave broken
// indexes behind, or a CREATE or ALTER, which may add indexes.
func needsFix(query string) bool {
	q := skipComments(query)
	for _, kw := range []string{"ROLLBACK", "CREATE", "ALTER"} {
		if len(q) >= len(kw) && strings.EqualFold(q[:len(kw)], kw) {
			return true
		}
	}
	return false
}

// skipComments drops leading white space and SQL comments from q.
func skipComments(q string) string {
	for {
		q = strings.TrimSpace(q)
		switch {
		case strings.HasPrefix(q, "--"), strings.HasPrefix(q, "#"):
			i := strings.IndexByte(q, '\n')
			if i < 0 {
				return ""
			}
			q = q[i+1:]
		case strings.HasPrefix(q, "/*"):
			i := strings.Index(q, "*/")
			if i < 0 {
				return ""
			}
			q = q[i+2:]
		default:
			return q
		}
	}
}

func (h *gatedHandler) ComQuery(ctx context.Context, c *wire.Conn, query string, cb wire.ResultSpoolFn) error {
	if err := h.gate.enter(ctx, c); err != nil {
		return err
	}
	err := h.Handler.ComQuery(ctx, c, query, cb)
	if err != nil && strings.Contains(err.Error(), "can't drop") && nonUniqueIndexAlter.MatchString(skipComments(query)) {
		// The stand-in drops every non-unique secondary index itself (see
		// fixIndexes), so a migration's DROP INDEX of one finds it gone:
		// the state the statement asks for. Its ADD INDEX clauses would be
		// dropped again anyway.
		err = cb(&sqltypes.Result{}, false)
	}
	return h.done(c, err, query)
}

// nonUniqueIndexAlter matches an ALTER TABLE made only of DROP INDEX and
// non-unique ADD INDEX clauses.
var nonUniqueIndexAlter = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+\S+\s+(DROP\s+INDEX\s+\w+|ADD\s+INDEX\s+\w+\s*\([^)]*\))(\s*,\s*(DROP\s+INDEX\s+\w+|ADD\s+INDEX\s+\w+\s*\([^)]*\)))*\s*;?\s*$`)

func (h *gatedHandler) ComMultiQuery(ctx context.Context, c *wire.Conn, query string, cb wire.ResultSpoolFn) (string, error) {
	if err := h.gate.enter(ctx, c); err != nil {
		return "", err
	}
	rest, err := h.Handler.ComMultiQuery(ctx, c, query, cb)
	return rest, h.done(c, err, query)
}

func (h *gatedHandler) ComPrepare(ctx context.Context, c *wire.Conn, query string, p *wire.PrepareData) ([]*querypb.Field, error) {
	if err := h.gate.enter(ctx, c); err != nil {
		return nil, err
	}
	f, err := h.Handler.ComPrepare(ctx, c, query, p)
	return f, h.done(c, err, "")
}

func (h *gatedHandler) ComStmtExecute(ctx context.Context, c *wire.Conn, p *wire.PrepareData, cb func(*sqltypes.Result) error) error {
	if err := h.gate.enter(ctx, c); err != nil {
		return err
	}
	err := h.Handler.ComStmtExecute(ctx, c, p, cb)
	return h.done(c, err, p.PrepareStmt)
}

func (h *gatedHandler) ComResetConnection(c *wire.Conn) error {
	err := h.Handler.ComResetConnection(c)
	// A reset rolls back any open transaction.
	if lerr := h.gate.leave(c, true, true); err == nil {
		err = lerr
	}
	return err
}

func (h *gatedHandler) ConnectionClosed(c *wire.Conn) {
	h.Handler.ConnectionClosed(c)
	// A dropped connection's open transaction is gone: free the gate.
	h.gate.leave(c, true, true)
}

// fixIndexes drops every non-unique secondary index of database db and
// rebuilds every unique one from the committed rows. The memory engine's
// table copies share index entries with the committed table, and a
// rolled-back write may have moved them; a rebuilt index owns fresh entries.
func fixIndexes(e *sqle.Engine, pro *memory.DbProvider, db string) error {
	ctx := sql.NewContext(context.Background(), sql.WithSession(memory.NewSession(sql.NewBaseSession(), pro)))
	ctx.SetCurrentDatabase(db)
	rows, err := query(ctx, e, `SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART
		FROM information_schema.statistics
		WHERE TABLE_SCHEMA = DATABASE() AND INDEX_NAME <> 'PRIMARY'
		ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX`)
	if err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}
	type index struct {
		name   string
		unique bool
		cols   []string
	}
	var tables []string
	byTable := map[string][]*index{}
	for _, r := range rows {
		table, name, col := fmt.Sprint(r[0]), fmt.Sprint(r[1]), quote(fmt.Sprint(r[3]))
		if r[4] != nil {
			col += fmt.Sprintf("(%v)", r[4])
		}
		idxs := byTable[table]
		if len(idxs) == 0 {
			tables = append(tables, table)
		}
		if len(idxs) == 0 || idxs[len(idxs)-1].name != name {
			idxs = append(idxs, &index{name: name, unique: fmt.Sprint(r[2]) == "0"})
			byTable[table] = idxs
		}
		idxs[len(idxs)-1].cols = append(idxs[len(idxs)-1].cols, col)
	}
	for _, table := range tables {
		var specs []string
		for _, ix := range byTable[table] {
			specs = append(specs, "DROP INDEX "+quote(ix.name))
			if ix.unique {
				specs = append(specs, "ADD UNIQUE INDEX "+quote(ix.name)+" ("+strings.Join(ix.cols, ", ")+")")
			}
		}
		if _, err := query(ctx, e, "ALTER TABLE "+quote(table)+" "+strings.Join(specs, ", ")); err != nil {
			return fmt.Errorf("fix indexes of %s: %w", table, err)
		}
	}
	return nil
}

// query runs one statement on the engine and returns all its rows.
func query(ctx *sql.Context, e *sqle.Engine, q string) ([]sql.Row, error) {
	_, iter, _, err := e.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return sql.RowIterToRows(ctx, iter)
}

// quote makes name a MySQL identifier.
func quote(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

package lifecycle

import "context"

// ReconcilePass is one pass of Run's loop, for tests that count its cost.
func (l *Ledger) ReconcilePass(ctx context.Context) { l.reconcileAll(ctx) }

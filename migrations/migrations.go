// Package migrations holds the versioned MySQL schema, embedded in the binary
// and applied with goose by `seckill migrate` and at serve start.
package migrations

import "embed"

// FS holds the goose SQL migrations.
//
//go:embed *.sql
var FS embed.FS

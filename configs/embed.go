package configs

import _ "embed"

// Default is seckill.yaml as built into the binary: the configuration when
// no SECKILL_CONFIG file is given.
//
//go:embed seckill.yaml
var Default []byte

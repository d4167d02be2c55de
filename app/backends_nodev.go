//go:build nodev

package app

// standIns says this build leaves the embedded stand-ins out (see
// NoDevTag): backends refuses every "embedded" address before calling the
// functions below, which only keep the other build's signatures.
const standIns = false

func embeddedRedis() (string, func(), error) {
	return "", nil, errNoStandIns([]string{setting("redis.addr")})
}

func embeddedMySQL(string) (string, func(), error) {
	return "", nil, errNoStandIns([]string{setting("mysql.dsn")})
}

func embeddedKafka() ([]string, func(), error) {
	return nil, nil, errNoStandIns([]string{setting("kafka.brokers")})
}

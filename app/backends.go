package app

import (
	"fmt"
	"strings"
)

// NoDevTag is the build tag that leaves the embedded stand-ins (and with
// them go-mysql-server, miniredis, kfake and logrus) out of the binary:
// production builds use it (Dockerfile, make build).
const NoDevTag = "nodev"

// StandIns reports whether this binary links the embedded stand-ins: false
// in a -tags nodev build, where dev mode and "embedded" addresses fail at
// startup (tests of dev mode skip on it).
func StandIns() bool { return standIns }

// embeddedIn lists the settings of cfg that ask for an in-process stand-in.
func embeddedIn(cfg Config) []string {
	var names []string
	if cfg.Redis.Addr == Embedded {
		names = append(names, setting("redis.addr"))
	}
	if cfg.MySQL.DSN == Embedded {
		names = append(names, setting("mysql.dsn"))
	}
	if len(cfg.Kafka.Brokers) == 1 && cfg.Kafka.Brokers[0] == Embedded {
		names = append(names, setting("kafka.brokers"))
	}
	return names
}

// errNoStandIns is the startup error of a binary built with -tags nodev
// given "embedded" for the settings in names.
func errNoStandIns(names []string) error {
	verb := "are"
	if len(names) == 1 {
		verb = "is"
	}
	return fmt.Errorf("this binary was built without the embedded stand-ins (-tags %s), but %s %s %q: "+
		"point SECKILL_REDIS_ADDR, SECKILL_MYSQL_DSN and SECKILL_KAFKA_BROKERS at real servers, "+
		"or use the default build (go run . dev) for the stand-ins "+
		"(seckill dev uses them for each of those variables left unset)",
		NoDevTag, strings.Join(names, ", "), verb, Embedded)
}

//go:build !nodev

package app

import (
	"github.com/sirupsen/logrus"

	"seckill/app/embedded"
)

// standIns says this build links the embedded stand-ins (see NoDevTag).
const standIns = true

func embeddedRedis() (addr string, stop func(), err error) { return embedded.Redis() }

func embeddedMySQL(db string) (dsn string, stop func(), err error) {
	// go-mysql-server logs every connection through the global logrus.
	logrus.SetLevel(logrus.ErrorLevel)
	return embedded.MySQL(db)
}

func embeddedKafka() (brokers []string, stop func(), err error) { return embedded.Kafka() }

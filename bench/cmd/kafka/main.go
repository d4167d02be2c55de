// Command kafka runs the embedded Kafka broker (kfake, the real wire
// protocol) as a process of its own, so the bench measures the seckill
// process without a broker inside it, as in production.
//
//	kafka -addr 127.0.0.1:19092 [-data-dir DIR [-sync]] [-advertise HOST:PORT]
//
// With -data-dir the broker keeps its topics, records and committed group
// offsets in DIR and reloads them at start, so it survives a restart (stop
// it with SIGTERM or SIGINT so it flushes; -sync also fsyncs every batch).
// -advertise names another address in the metadata the broker gives its
// clients (a proxy in front of it, as the fault suite's partitions use).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19092", "listen address")
	dataDir := flag.String("data-dir", "", "persist the broker's state in this directory and reload it at start (default: in memory only)")
	syncWrites := flag.Bool("sync", false, "with -data-dir, fsync every produced batch")
	advertise := flag.String("advertise", "", "address the broker gives its clients in metadata (default: -addr)")
	flag.Parse()
	if err := run(*addr, *dataDir, *advertise, *syncWrites); err != nil {
		fmt.Fprintln(os.Stderr, "kafka:", err)
		os.Exit(1)
	}
}

func run(addr, dataDir, advertise string, syncWrites bool) error {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return err
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.GroupMinSessionTimeout(100 * time.Millisecond)}
	if advertise != "" {
		adv, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return fmt.Errorf("-advertise: %w", err)
		}
		// kfake advertises its listener's address.
		opts = append(opts, kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			return advertised{ln, adv}, nil
		}))
	}
	if dataDir != "" {
		opts = append(opts, kfake.DataDir(dataDir))
		if syncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	} else if syncWrites {
		return fmt.Errorf("-sync needs -data-dir")
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Println("kafka listening on", addr, "advertised as", c.ListenAddrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// advertised is a listener that names another address than its own.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

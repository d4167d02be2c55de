# Makefile: the few commands worth a name. Go does the real work.
.PHONY: build bench bench-durability faults

# build: the production seckill binary, without the embedded stand-ins of
# `seckill dev` (-tags nodev; "embedded" addresses are refused at startup).
# For dev mode use the default build: go run . dev
build:
	go build -tags nodev -o bin/seckill .

# bench: the whole load test against local Redis and MariaDB (bench/run.sh),
# then what each durability setting of a 202 costs.
bench: bench-durability
	bash bench/run.sh

# bench-durability: accepted purchases/s with AOF everysec, AOF always and a
# replica acknowledging every reservation (WAIT), each on a Redis of its own,
# and on a 3-master Redis Cluster (everysec) under the same load.
bench-durability:
	go test -run '^$$' -bench ReserveDurability -benchtime 20000x -count 3 ./stock

# faults: the fault-injection suite (also run by .ci/run).
faults:
	go run ./bench/faults

# Makefile: the few commands worth a name. Go does the real work.
.PHONY: build bench

# build: the seckill binary.
build:
	go build -o bin/seckill .

# bench: the whole load test against local Redis and MariaDB (bench/run.sh).
bench:
	bash bench/run.sh

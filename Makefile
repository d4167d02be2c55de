# Makefile: the few commands worth a name. Go does the real work.
.PHONY: build bench

# build: the production seckill binary, without the embedded stand-ins of
# `seckill dev` (-tags nodev; "embedded" addresses are refused at startup).
# For dev mode use the default build: go run . dev
build:
	go build -tags nodev -o bin/seckill .

# bench: the whole load test against local Redis and MariaDB (bench/run.sh).
bench:
	bash bench/run.sh

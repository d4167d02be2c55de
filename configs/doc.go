// Package configs holds the service configuration (seckill.yaml) and the
// files that run seckill in production: the Prometheus scrape config and
// alert rules (prometheus/), the Grafana provisioning and dashboard
// (grafana/) and the load balancer config (lb/). Dockerfile and
// docker-compose.yml live at the repository root.
//
// The package has no code. Its tests check that these files agree with each
// other and with the app: compose wiring, ports, scrape targets, and that
// every metric a dashboard or alert queries is one the app exports.
package configs

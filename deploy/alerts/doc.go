// Package alerts tests deploy/prometheus/alerts.yaml with Prometheus' own rule engine, the way
// `promtool test rules` does: series in, alerts out, evaluated once a minute over an hour. It is
// a module of its own so that Prometheus' dependencies stay out of the runner's module graph.
package alerts

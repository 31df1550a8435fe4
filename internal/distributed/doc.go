// Package distributed holds the distributed-topology test: the embedded broker,
// every service and the gateway each run as their own `puchi` process on
// PostgreSQL, and the learning flow passes across them, including a service
// killed with SIGKILL and started again (its consumer group catches up, nothing
// is lost or counted twice). `make run-distributed` starts the same topology by
// hand (scripts/run-distributed.sh). The package has no non-test code.
package distributed

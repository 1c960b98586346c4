// Package natsembed runs a real NATS server with JetStream inside the process:
// one server for the laptop stack (`--embedded-nats`) and for tests, or a
// cluster of several for tests where replication and leader loss matter.
package natsembed

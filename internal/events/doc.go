// Package events is the contract other services code against: command and
// event types, their validation and subjects, CloudEvents encoding, JSON
// Schemas, and the JetStream topology that carries them.
package events

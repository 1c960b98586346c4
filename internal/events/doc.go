// Package events is the contract other services code against: command and
// event types, their validation and subjects, CloudEvents encoding, JSON
// Schemas, and the JetStream topology that carries them.
//
// Commands are read strictly by DecodeCommand — unknown fields, nulls and
// duplicate keys are errors — because a command from another team's service
// that is quietly misread does the wrong thing to real WhatsApp groups; every
// problem is reported at once in a *ValidationError. Events are CloudEvents
// 1.0 built by NewEvent and NewTerminalEvent, with deterministic ids where a
// re-publish must be recognised as the same event.
//
// The JSON Schemas in Schemas (also referenced by docs/asyncapi.yaml) are
// tested against the Go types, the examples in testdata and the AsyncAPI
// document, so none of them can drift from the code unnoticed.
package events

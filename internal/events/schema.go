package events

import (
	"embed"
	"io/fs"
)

//go:embed schemas/*.json
var schemaFiles embed.FS

// Schemas returns the JSON Schemas (draft 2020-12) of every command, event
// and query, one file per schema, referring to each other by relative file
// name, so the ingest can serve them as they are (e.g. under /v1/schemas/).
// docs/asyncapi.yaml points at the same files.
func Schemas() fs.FS {
	sub, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		panic(err) // "schemas" is a valid path and embedded; cannot happen
	}
	return sub
}

// CommandSchema is the file in Schemas that describes commands of cmdType,
// or "" for an unknown type. "command.json" describes any command.
func CommandSchema(cmdType string) string {
	if !IsCommandType(cmdType) {
		return ""
	}
	return "command." + cmdType + ".json"
}

// EventSchema is the file in Schemas that describes whole CloudEvents of
// eventType (attributes and data), or "" for an unknown type.
func EventSchema(eventType string) string {
	if !IsEventType(eventType) {
		return ""
	}
	return "event." + eventType + ".json"
}

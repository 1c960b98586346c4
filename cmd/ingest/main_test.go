package main

import (
	"context"
	"strings"
	"testing"
)

func TestInvalidConfigurationStopsStartUpWithOneLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_APP_SECRET": "sekr1t-value", "INGEST_SHUTDOWN_GRACE": "soon"}
	err := runMain(context.Background(), nil, func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("runMain started without WHATSAPP_VERIFY_TOKEN, want a configuration error")
	}
	msg := err.Error()
	for _, want := range []string{"WHATSAPP_VERIFY_TOKEN", "INGEST_SHUTDOWN_GRACE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "sekr1t") {
		t.Errorf("error is not one secret-free line: %q", msg)
	}
}

func TestPrintConfigListsEveryVariable(t *testing.T) {
	t.Parallel()
	_, e := load(func(string) string { return "" })
	names := map[string]bool{}
	for _, v := range e.Vars() {
		names[v.Name] = true
	}
	for _, want := range []string{"NATS_URL", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "INGEST_ADDR", "INGEST_API_TOKENS"} {
		if !names[want] {
			t.Errorf("the ingest does not declare %s", want)
		}
	}
}

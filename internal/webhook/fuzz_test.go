package webhook_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/webhook"
)

func FuzzParse(f *testing.F) {
	for _, file := range fixtureFiles(f) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(envelope("group_participant_update", `{`+metadata+`,"groups":[{"type":"group_add_participants","timestamp":"1"},{"initiated_by":"x"}],"initiated_by":"y"}`))
	f.Add(envelope("", `null`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[1,{"errors":[{"code":"7"}]}]}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		items, err := webhook.Parse(body)
		if err != nil {
			if !errors.Is(err, webhook.ErrMalformed) {
				t.Fatalf("Parse error %v is not ErrMalformed", err)
			}
			return
		}
		for i, it := range items {
			if !msgIDPattern.MatchString(it.MsgID) {
				t.Fatalf("item %d: MsgID %q", i, it.MsgID)
			}
			if !events.ValidToken(it.Field) || strings.ContainsAny(it.Field, "*>.") {
				t.Fatalf("item %d: field %q is not a subject token", i, it.Field)
			}
			switch it.Kind {
			case webhook.KindGroup, webhook.KindStatus, webhook.KindMessage, webhook.KindChange:
			default:
				t.Fatalf("item %d: kind %q", i, it.Kind)
			}
			// Decode may refuse types Meta never sends, but must not panic.
			_, _ = webhook.Decode(it)
		}
		again, err := webhook.Parse(body)
		if err != nil || !reflect.DeepEqual(items, again) {
			t.Fatalf("Parse is not deterministic: %v", err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	secret := []byte("fuzz-secret")
	for _, file := range fixtureFiles(f)[:4] {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(secret, b, webhook.Sign(secret, b))
		f.Add(secret, b, "sha256=00")
	}
	f.Add([]byte{}, []byte("x"), "")
	f.Add(secret, []byte{}, "SHA256=")
	f.Fuzz(func(t *testing.T, secret, body []byte, header string) {
		err := webhook.Verify(secret, body, header)
		if len(secret) == 0 {
			if !errors.Is(err, webhook.ErrNoAppSecret) {
				t.Fatalf("empty secret accepted: %v", err)
			}
			return
		}
		want := webhook.Sign(secret, body)
		if err == nil && !strings.EqualFold(strings.TrimSpace(header), want) {
			t.Fatalf("Verify accepted %q, the signature is %q", header, want)
		}
		if err := webhook.Verify(secret, body, want); err != nil {
			t.Fatalf("Verify refused its own signature: %v", err)
		}
	})
}

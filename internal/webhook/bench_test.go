package webhook_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/webhook"
)

// batch builds one delivery holding n aggregated read statuses, Meta's
// documented maximum being 1000 updates per POST.
func batch(n int) []byte {
	statuses := make([]string, n)
	for i := range statuses {
		statuses[i] = fmt.Sprintf(`{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIz%05d","status":"read","timestamp":"1750101000",`+
			`"recipient_id":"%s","recipient_type":"group","recipient_participant_id":"1650555%04d",`+
			`"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"group_marketing"}}`, i/8, gidFields, i)
	}
	return envelope("messages", `{`+metadata+`,"statuses":[`+strings.Join(statuses, ",")+`]}`)
}

func BenchmarkParse(b *testing.B) {
	largest := ""
	var largestSize int64
	for _, f := range fixtureFiles(b) {
		if st, err := os.Stat(f); err == nil && st.Size() > largestSize {
			largest, largestSize = f, st.Size()
		}
	}
	fixture, err := os.ReadFile(largest)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		body  []byte
		items int
	}{
		{"1000-statuses", batch(1000), 1000},
		// The delivery of the ingest benchmark: one group event.
		{"one-group-event", envelope("group_participants_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000",`+
			`"group_id":"`+gidPages+`","type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}],`+
			`"initiated_by":"participant"}]}`), 1},
		{"largest-fixture", fixture, -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if !json.Valid(bc.body) {
				b.Fatal("benchmark body is not JSON")
			}
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				items, err := webhook.Parse(bc.body)
				if err != nil || (bc.items >= 0 && len(items) != bc.items) {
					b.Fatalf("Parse: %d items, %v", len(items), err)
				}
			}
		})
	}
}

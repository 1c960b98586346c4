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

// BenchmarkParseScaling shows that Parse's cost per list element stays flat
// as a change's lists grow: compare ns/elem across sizes. Both shapes once
// took time quadratic in the list: every status searched contacts[] from
// the start, and every orphan initiated_by searched back through the
// orphans before it. (From 1,000 to 20,000 ns/elem steps up once: a tree
// that large is not pooled, so its buffers are allocated afresh; from
// 20,000 to 50,000 it is flat.)
func BenchmarkParseScaling(b *testing.B) {
	for _, n := range []int{1000, 20000, 50000} {
		b.Run(fmt.Sprintf("statuses-with-contacts/%d", n), func(b *testing.B) {
			benchScaling(b, oneToOneStatuses(n), n, n)
		})
		b.Run(fmt.Sprintf("orphan-initiated-by/%d", n), func(b *testing.B) {
			// One group event, then n elements holding nothing but
			// initiated_by: the first is attached, the rest are left over
			// in one change item.
			var sb strings.Builder
			sb.WriteString(`{` + metadata + `,"groups":[{"timestamp":"1750101000","group_id":"` + gidPages +
				`","type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}]}`)
			for range n {
				sb.WriteString(`,{"initiated_by":"participant"}`)
			}
			sb.WriteString(`]}`)
			benchScaling(b, envelope("group_participants_update", sb.String()), 2, n)
		})
	}
}

// oneToOneStatuses is one change holding n statuses of 1:1 sends and their
// n contacts, the contacts in the opposite order.
func oneToOneStatuses(n int) []byte {
	statuses, contacts := make([]string, n), make([]string, n)
	for i := range n {
		statuses[i] = fmt.Sprintf(`{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIz%06d","status":"delivered","timestamp":"1750101000",`+
			`"recipient_id":"1650%07d","recipient_user_id":"US.1349120865%07d"}`, i, i, i)
		contacts[n-1-i] = fmt.Sprintf(`{"profile":{"name":"User %d"},"wa_id":"1650%07d","user_id":"US.1349120865%07d"}`, i, i, i)
	}
	return envelope("messages", `{`+metadata+`,"contacts":[`+strings.Join(contacts, ",")+`],"statuses":[`+strings.Join(statuses, ",")+`]}`)
}

func benchScaling(b *testing.B, body []byte, items, elems int) {
	if !json.Valid(body) {
		b.Fatal("benchmark body is not JSON")
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := webhook.Parse(body)
		if err != nil || len(got) != items {
			b.Fatalf("Parse: %d items, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(elems), "ns/elem")
}

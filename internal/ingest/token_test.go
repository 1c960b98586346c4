package ingest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/ingest"
)

func TestParseAPITokens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		entries []string
		want    []ingest.APIToken
	}{
		{"Plain tokens act for every number", []string{"dev-api-token", "3f9c1e0d9ab24f6e"},
			[]ingest.APIToken{{Token: "dev-api-token", Entry: 1}, {Token: "3f9c1e0d9ab24f6e", Entry: 2}}},
		{"Base64 tokens keep their + / and =", []string{"Zm9v+YmFy/LQ==", "Zm9v_YmFy-LQ"},
			[]ingest.APIToken{{Token: "Zm9v+YmFy/LQ==", Entry: 1}, {Token: "Zm9v_YmFy-LQ", Entry: 2}}},
		{"A scope of one number", []string{"tok@106540352242922"},
			[]ingest.APIToken{{Token: "tok", PhoneNumberIDs: []string{"106540352242922"}, Entry: 1}}},
		{"A scope of several numbers, sorted and once each", []string{"ab+c/d==@2+106540352242922 + 2"},
			[]ingest.APIToken{{Token: "ab+c/d==", PhoneNumberIDs: []string{"106540352242922", "2"}, Entry: 1}}},
		{"A token given twice alike is one", []string{"a", "t@1+2", "a", "t@2+1"},
			[]ingest.APIToken{{Token: "a", Entry: 1}, {Token: "t", PhoneNumberIDs: []string{"1", "2"}, Entry: 2}}},
		{"Empty entries are skipped", []string{"", "a"}, []ingest.APIToken{{Token: "a", Entry: 2}}},
		{"A rate of its own", []string{"Zm9v+YmFy/LQ==;rate=2.5"},
			[]ingest.APIToken{{Token: "Zm9v+YmFy/LQ==", Rate: ptr(2.5), Entry: 1}}},
		{"A rate of 0 lifts the bound", []string{"ops;rate=0"}, []ingest.APIToken{{Token: "ops", Rate: ptr(0.0), Entry: 1}}},
		{"A burst of its own", []string{"tok;burst=40"}, []ingest.APIToken{{Token: "tok", Burst: 40, Entry: 1}}},
		{"A scope, a rate and a burst, spaced", []string{"tok@2+1 ; burst=3 ; rate=1"},
			[]ingest.APIToken{{Token: "tok", PhoneNumberIDs: []string{"1", "2"}, Rate: ptr(1.0), Burst: 3, Entry: 1}}},
		{"A token given twice with the same bound is one", []string{"t;rate=1", "t;rate=1.0"},
			[]ingest.APIToken{{Token: "t", Rate: ptr(1.0), Entry: 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ingest.ParseAPITokens(c.entries)
			if err != nil {
				t.Fatalf("ParseAPITokens(%q): %v", c.entries, err)
			}
			if !slices.EqualFunc(got, c.want, func(a, b ingest.APIToken) bool {
				return a.Token == b.Token && a.Entry == b.Entry && slices.Equal(a.PhoneNumberIDs, b.PhoneNumberIDs) &&
					(a.Rate == nil) == (b.Rate == nil) && (a.Rate == nil || *a.Rate == *b.Rate) && a.Burst == b.Burst
			}) {
				t.Errorf("ParseAPITokens(%q) = %s, want %s", c.entries, show(got), show(c.want))
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// show prints tokens with their rates, not the rates' addresses.
func show(tokens []ingest.APIToken) string {
	var b strings.Builder
	for _, t := range tokens {
		rate := "nil"
		if t.Rate != nil {
			rate = fmt.Sprint(*t.Rate)
		}
		fmt.Fprintf(&b, "{%s %v rate=%s burst=%d entry=%d}", t.Token, t.PhoneNumberIDs, rate, t.Burst, t.Entry)
	}
	return b.String()
}

// A malformed entry is refused naming its place, never its text: the
// token, nor (for a token that holds an "@") what follows the "@".
func TestParseAPITokensRefusesMalformedEntries(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"No token":               "@106540352242922",
		"No number":              "Kx3mWq8v@",
		"An empty number":        "Kx3mWq8v@106540352242922+",
		"A number not digits":    "Kx3mWq8v@10654035224292x",
		"A number too long":      "Kx3mWq8v@" + strings.Repeat("1", 33),
		"A token holding an @":   "Kx3mWq8v@Rp5nT7yLd",
		"Two @":                  "Kx3mWq8v@106540352242922@1",
		"Scoped and plain":       "Kx3mWq8v@106540352242922,Kx3mWq8v",
		"Two different scopes":   "Kx3mWq8v@106540352242922,Kx3mWq8v@106540352242923",
		"A plain, then a scoped": "Kx3mWq8v,Kx3mWq8v@106540352242923",
		"A rate not a number":    "Kx3mWq8v;rate=fast",
		"A rate below 0":         "Kx3mWq8v;rate=-1",
		"A rate not finite":      "Kx3mWq8v;rate=Inf",
		"A burst of 0":           "Kx3mWq8v;burst=0",
		"A burst not an integer": "Kx3mWq8v;burst=1.5",
		"An unknown option":      "Kx3mWq8v;rpm=60",
		"An option twice":        "Kx3mWq8v;rate=1;rate=2",
		"A token holding a ;":    "Kx3mWq8v;Rp5nT7yLd",
		"An empty option":        "Kx3mWq8v;",
		"No token before its ;":  ";rate=1",
		"Two different rates":    "Kx3mWq8v;rate=1,Kx3mWq8v;rate=2",
		"A rate, then none":      "Kx3mWq8v;rate=1,Kx3mWq8v",
		"Two different bursts":   "Kx3mWq8v;burst=1,Kx3mWq8v;burst=2",
	}
	for name, entry := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ingest.ParseAPITokens(append([]string{"first-token"}, strings.Split(entry, ",")...))
			if err == nil {
				t.Fatalf("ParseAPITokens accepted %q", entry)
			}
			msg := err.Error()
			if !strings.Contains(msg, "entry 2") && !strings.Contains(msg, "entry 3") {
				t.Errorf("error %q does not name the entry", msg)
			}
			for _, secret := range []string{"Kx3mWq8v", "Rp5nT7yLd", "first-token"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows %q", msg, secret)
				}
			}
		})
	}
}

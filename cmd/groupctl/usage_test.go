package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestUsageErrorsExit2WithOneLine(t *testing.T) {
	t.Parallel()
	// No server is needed: every one of these is refused before connecting.
	b := bundle{url: "nats://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob" for "groupctl"`},
		{[]string{"dlq", "frob"}, `unknown command "frob" for "groupctl dlq"`},
		{[]string{"submit", "nope"}, `unknown command "nope" for "groupctl submit"`},
		{[]string{"submit"}, "name a command type"},
		{[]string{"status"}, "groupctl status needs 1 argument(s): command-id, got 0"},
		{[]string{"status", "a", "b"}, "needs 1 argument(s)"},
		{[]string{"status", "bad id"}, `"bad id" is not a command id`},
		{[]string{"events", "--bogus"}, "unknown flag: --bogus (see groupctl events --help)"},
		{[]string{"events", "--since", "yesterday"}, "--since: want a duration"},
		{[]string{"events", "--all", "--since", "1h"}, "give --all or --since, not both"},
		{[]string{"events", "--type", "group.a.b"}, `--type "group.a.b"`},
		{[]string{"submit", "create_group", "--subject", "x"}, "--phone is required"},
		{[]string{"submit", "create_group", "--phone", phone, "--subject", "  "}, "invalid command: params.subject:"},
		{[]string{"submit", "get_invite_link", "--phone", phone}, "invalid command: group_id: is required for get_invite_link"},
		{[]string{"submit", "create_group", "--phone", phone, "--subject", "x", "--deadline", "soon"}, "--deadline: want an RFC 3339 time"},
		{[]string{"submit", "--file", "-", "--id", "x"}, "--id cannot be combined with --file"},
		{[]string{"dlq", "replay"}, "give the sequence numbers to replay"},
		{[]string{"dlq", "replay", "1", "--all"}, "give sequence numbers or --all, not both"},
		{[]string{"dlq", "show", "abc"}, `"abc" is not a DLQ sequence number`},
		{[]string{"dlq", "list", "--type", "nope"}, `--type "nope" is not a command type`},
		{[]string{"group", "info"}, "needs 1 argument(s): group-id"},
		{[]string{"campaign", "status"}, "needs 1 argument(s): campaign-id"},
		{[]string{"status", "some-id", "--inbox-prefix", "_INBOX.>"}, `--inbox-prefix "_INBOX.>" is not a subject prefix`},
		{[]string{"dlq", "list", "--prefix", "acme:prod"}, `prefix "acme:prod": want ASCII letters, digits, - and _`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := b.groupctl(t, tc.args...)
			wantCode(t, r, 2)
			if !strings.HasPrefix(r.stderr, "groupctl: ") || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("stderr %q, want one line starting with groupctl:", r.stderr)
			}
			wantContains(t, "stderr", r.stderr, tc.want)
		})
	}
}

func TestFailuresExit1WithOneLine(t *testing.T) {
	t.Parallel()
	b := bundle{url: "nats://127.0.0.1:1"}
	r := b.groupctl(t, "status", "some-id")
	wantCode(t, r, 1)
	if !strings.HasPrefix(r.stderr, "groupctl: connect to NATS at nats://127.0.0.1:1") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr %q, want one line about the connection", r.stderr)
	}
}

func TestHelpAndConfigExit0(t *testing.T) {
	t.Parallel()
	b := bundle{url: "nats://127.0.0.1:1"}
	for _, args := range [][]string{{}, {"--help"}, {"dlq"}, {"submit", "create_group", "--help"}} {
		r := b.groupctl(t, args...)
		wantCode(t, r, 0)
		wantContains(t, "help", r.stdout, "Usage:")
	}
	r := b.groupctl(t, "--print-config")
	wantCode(t, r, 0)
	var names []string
	for line := range strings.Lines(r.stdout) {
		var v struct{ Name string }
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("--print-config line %q: %v", line, err)
		}
		names = append(names, v.Name)
	}
	for _, want := range []string{"NATS_URL", "NATS_CREDS", "GROUPFLOW_PREFIX", "NATS_INBOX_PREFIX", "GROUPCTL_PHONE_NUMBER_ID"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Fatalf("--print-config lists %v, want %s among them", names, want)
		}
	}
}

// TestInboxPrefixFromFlagOrEnvironment: replies come back under the prefix
// the operator's NATS user may subscribe to, --inbox-prefix first.
func TestInboxPrefixFromFlagOrEnvironment(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	for _, tc := range []struct {
		name, env, flag, want string
	}{
		{"Neither keeps nats.go's _INBOX", "", "", ""},
		{"The environment sets it", "_INBOX_ops", "", "_INBOX_ops"},
		{"The flag wins over the environment", "_INBOX_ops", "_INBOX_me", "_INBOX_me"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"NATS_URL": b.url, "NATS_INBOX_PREFIX": tc.env}
			a := newApp(func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
			defer a.close(t.Context())
			a.inboxPrefix = tc.flag
			js, err := a.connect(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := a.nc.Opts.InboxPrefix; got != tc.want {
				t.Errorf("inbox prefix %q, want %q", got, tc.want)
			}
			if _, err := js.AccountInfo(t.Context()); err != nil {
				t.Errorf("a JetStream request under the prefix: %v", err)
			}
		})
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// TestOneTracePerCommand follows commands through the deployed path —
// HTTP to the ingest, JetStream, a worker, the simulator over HTTP, its
// webhook back through the ingest — and checks the spans the trace is
// made of and how they hang together.
func TestOneTracePerCommand(t *testing.T) {
	s := setup(t)
	s.startWorker(t, workerOpts{})

	var groupID string
	t.Run("A create_group posted to the ingest is one trace and its webhook links to it", func(t *testing.T) {
		const id = "trace-create-1"
		// Hold the simulator's webhook until the command awaits it, as
		// Meta's normally come: then it is the webhook that completes it.
		s.gate.hold()
		if code, body := s.post(t, command(id, events.CreateGroup, "", events.CreateGroupParams{Subject: "Traced"}), s.opts.secrets.APIToken); code != http.StatusAccepted {
			t.Fatalf("POST /v1/commands = %d %s, want 202", code, body)
		}
		entry := s.awaitLinked(t, id)
		s.gate.release()
		ev, res := s.events.Terminal(t, id)
		if res.Outcome != events.OutcomeSucceeded {
			t.Fatalf("create_group outcome %q (%+v), want succeeded", res.Outcome, res.Error)
		}
		groupID = res.GroupID

		spans := s.waitNamed(t, trace.TraceID{}, "POST /v1/commands", "process groups.cmd.*.create_group", "complete create_group",
			"POST /webhook", "process groups.webhook.*.group_lifecycle_update")
		server := one(t, spans, trace.SpanKindServer, "POST /v1/commands")
		tid := server.SpanContext.TraceID()
		inTrace := byTrace(spans, tid)
		if server.Parent.IsValid() {
			t.Errorf("ingest request span has parent %v; with no caller traceparent it should start the trace", server.Parent)
		}
		publish := one(t, inTrace, trace.SpanKindProducer, "send groups.cmd.*.create_group")
		process := one(t, inTrace, trace.SpanKindConsumer, "process groups.cmd.*.create_group")
		call := one(t, inTrace, trace.SpanKindClient, "POST /v23.0/{phone_number_id}/groups")
		complete := one(t, inTrace, trace.SpanKindInternal, "complete create_group")
		result := one(t, inTrace, trace.SpanKindProducer, "send groups.event.*.command.succeeded")

		childOf(t, publish, server)
		childOf(t, process, publish)
		childOf(t, call, process)
		childOf(t, complete, process)
		childOf(t, result, complete)
		if roots := roots(inTrace); len(roots) != 1 {
			t.Errorf("the command's trace has %d root spans %v, want one (the ingest request)", len(roots), spanNames(roots))
		}

		// The consumer span follows the messaging conventions and links
		// to the creation context (the publish).
		wantAttrs(t, process, map[string]string{
			"messaging.system":                      "nats",
			"messaging.operation.type":              "process",
			"messaging.destination.name":            s.names.Command(phone, events.CreateGroup),
			"messaging.destination.template":        "groups.cmd.*.create_group",
			"messaging.message.id":                  id,
			"messaging.consumer.group.name":         s.names.CommandConsumer(),
			"messaging.nats.message.delivery_count": "1",
			"messaging.nats.stream.name":            s.names.CommandStream(),
			"groupflow.command.id":                  id,
			"groupflow.command.type":                events.CreateGroup,
		})
		if !linksTo(process, publish.SpanContext) {
			t.Errorf("consumer span links %v, want a link to the publish span %s", links(process), publish.SpanContext.SpanID())
		}
		wantAttrs(t, publish, map[string]string{
			"messaging.system": "nats", "messaging.operation.type": "send", "messaging.message.id": id,
			"messaging.destination.template": "groups.cmd.*.create_group",
		})
		wantAttrs(t, call, map[string]string{"groupflow.endpoint": "create_group", "url.template": "/v23.0/{phone_number_id}/groups",
			"http.response.status_code": "200"})
		wantAttrs(t, result, map[string]string{
			"messaging.system": "nats", "messaging.operation.type": "send",
			"messaging.message.id": events.TerminalEventID(id, ""), "messaging.nats.stream.name": s.names.EventStream(),
			"messaging.destination.template": "groups.event.*.command.succeeded",
		})
		if attr(result, "messaging.nats.message.stream_sequence") == "" {
			t.Errorf("result publish span lacks the acknowledged stream sequence")
		}

		// The ledger keeps the consumer span's traceparent ...
		if sc, ok := telemetry.ParseTraceParent(entry.Traceparent); !ok || sc.SpanID() != process.SpanContext.SpanID() || sc.TraceID() != tid {
			t.Errorf("ledger traceparent %q, want the consumer span 00-%s-%s-01", entry.Traceparent, tid, process.SpanContext.SpanID())
		}
		// ... so the result event carries the command's trace.
		if got, want := ev.Header.Get("traceparent"), traceparent(result.SpanContext); got != want {
			t.Errorf("terminal event traceparent %q, want the result publish span's %q", got, want)
		}

		// The webhook has a trace of its own (Meta's request), whose
		// consumer span links to the command; the completion links back.
		webhook := one(t, spans, trace.SpanKindConsumer, "process groups.webhook.*.group_lifecycle_update")
		if webhook.SpanContext.TraceID() == tid {
			t.Fatalf("webhook processing is in the command's trace; want its own trace (the webhook request's) linked to it")
		}
		if !linksTo(webhook, process.SpanContext) {
			t.Errorf("webhook consumer span links %v, want a link to the command's span %s/%s", links(webhook), tid, process.SpanContext.SpanID())
		}
		if !linksTo(complete, webhook.SpanContext) {
			t.Errorf("completion span links %v, want a link back to the webhook's span", links(complete))
		}
		hookTrace := byTrace(spans, webhook.SpanContext.TraceID())
		hookServer := one(t, hookTrace, trace.SpanKindServer, "POST /webhook")
		hookPublish := one(t, hookTrace, trace.SpanKindProducer, "send groups.webhook.*.group_lifecycle_update")
		childOf(t, hookPublish, hookServer)
		wantAttrs(t, hookPublish, map[string]string{
			"messaging.destination.name":     s.names.Webhook(phone, "group_lifecycle_update"),
			"messaging.destination.template": "groups.webhook.*.group_lifecycle_update",
		})
		childOf(t, webhook, hookPublish)
		created := s.events.OfType(events.EventGroupCreated)
		if len(created) != 1 {
			t.Fatalf("%d group.created events, want 1", len(created))
		}
		domain := one(t, hookTrace, trace.SpanKindProducer, "send groups.event.*.group.created")
		childOf(t, domain, webhook)
		if got, want := created[0].Header.Get("traceparent"), traceparent(domain.SpanContext); got != want {
			t.Errorf("group.created traceparent %q, want its publish span's %q", got, want)
		}

		s.checkLogs(t, map[string]trace.TraceID{id: tid})
	})

	t.Run("Each attempt of a retried Graph call is its own span in the caller's trace", func(t *testing.T) {
		if groupID == "" {
			t.Skip("needs the group of the create_group subtest")
		}
		const id = "trace-link-1"
		caller := mustSpanContext(t, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
		if err := s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Limit: 1, Status5xx: 1}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.sim.SetFaults(sim.Faults{}) }()
		if code, body := s.post(t, command(id, events.GetInviteLink, groupID, nil), s.opts.secrets.APIToken,
			"traceparent", traceparent(caller)); code != http.StatusAccepted {
			t.Fatalf("POST /v1/commands = %d %s, want 202", code, body)
		}
		ev, res := s.events.Terminal(t, id)
		if res.Outcome != events.OutcomeSucceeded {
			t.Fatalf("get_invite_link outcome %q (%+v), want succeeded after one retry", res.Outcome, res.Error)
		}
		spans := s.waitNamed(t, caller.TraceID(), "POST /v1/commands", "process groups.cmd.*.get_invite_link")
		inTrace := byTrace(spans, caller.TraceID())
		server := one(t, inTrace, trace.SpanKindServer, "POST /v1/commands")
		if server.Parent.SpanID() != caller.SpanID() {
			t.Errorf("ingest span's parent is %s, want the caller's span %s", server.Parent.SpanID(), caller.SpanID())
		}
		process := one(t, inTrace, trace.SpanKindConsumer, "process groups.cmd.*.get_invite_link")
		childOf(t, process, one(t, inTrace, trace.SpanKindProducer, "send groups.cmd.*.get_invite_link"))
		var calls tracetest.SpanStubs
		for _, sp := range inTrace {
			if sp.SpanKind == trace.SpanKindClient && sp.Name == "GET /v23.0/{group_id}/invite_link" {
				calls = append(calls, sp)
				childOf(t, sp, process)
			}
		}
		if len(calls) != 2 {
			t.Fatalf("%d client spans GET /v23.0/{group_id}/invite_link, want 2 (the 5xx and its retry): %v", len(calls), spanNames(inTrace))
		}
		slices.SortFunc(calls, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
		if st := attr(calls[0], "http.response.status_code"); !strings.HasPrefix(st, "5") || calls[0].Status.Code != codes.Error {
			t.Errorf("first attempt: status %s, span status %v; want a 5xx marked as an error", st, calls[0].Status)
		}
		if st := attr(calls[1], "http.response.status_code"); st != "200" {
			t.Errorf("retry: status %s, want 200", st)
		}
		result := one(t, inTrace, trace.SpanKindProducer, "send groups.event.*.command.succeeded")
		childOf(t, result, process)
		if got, want := ev.Header.Get("traceparent"), traceparent(result.SpanContext); got != want {
			t.Errorf("terminal event traceparent %q, want %q", got, want)
		}
		s.checkLogs(t, map[string]trace.TraceID{id: caller.TraceID()})
	})

	t.Run("A traceparent set by an external NATS publisher is continued", func(t *testing.T) {
		if groupID == "" {
			t.Skip("needs the group of the create_group subtest")
		}
		const id = "trace-external-1"
		ext := mustSpanContext(t, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
		body, _ := json.Marshal(command(id, events.GetInviteLink, groupID, nil))
		// Plain nats.go, as a service in any language would publish.
		msg := &nats.Msg{Subject: s.names.Command(phone, events.GetInviteLink), Data: body, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header["traceparent"] = []string{traceparent(ext)}
		if _, err := s.js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		ev, res := s.events.Terminal(t, id)
		if res.Outcome != events.OutcomeSucceeded {
			t.Fatalf("outcome %q (%+v), want succeeded", res.Outcome, res.Error)
		}
		spans := s.waitNamed(t, ext.TraceID(), "process groups.cmd.*.get_invite_link")
		inTrace := byTrace(spans, ext.TraceID())
		process := one(t, inTrace, trace.SpanKindConsumer, "process groups.cmd.*.get_invite_link")
		if process.Parent.SpanID() != ext.SpanID() || !process.Parent.IsRemote() {
			t.Errorf("consumer span's parent is %v, want the publisher's remote span %s", process.Parent, ext.SpanID())
		}
		if !linksTo(process, ext) {
			t.Errorf("consumer span links %v, want the publisher's span as creation context", links(process))
		}
		childOf(t, one(t, inTrace, trace.SpanKindClient, "GET /v23.0/{group_id}/invite_link"), process)
		result := one(t, inTrace, trace.SpanKindProducer, "send groups.event.*.command.succeeded")
		childOf(t, result, process)
		if got, want := ev.Header.Get("traceparent"), traceparent(result.SpanContext); got != want {
			t.Errorf("terminal event traceparent %q, want %q (the publisher's trace)", got, want)
		}
		s.checkLogs(t, map[string]trace.TraceID{id: ext.TraceID()})
	})
}

// TestEachDeliverySpanSaysHowItWasSettled throttles a command's first
// call: its first delivery is handed back with a delay, its second
// succeeds. Each consumer span must say what became of its delivery —
// otherwise a trace shows two "process" spans and no reason for the second.
func TestEachDeliverySpanSaysHowItWasSettled(t *testing.T) {
	s := setup(t)
	s.startWorker(t, workerOpts{})
	const id = "settle-1"
	if code, body := s.post(t, command("settle-group", events.CreateGroup, "", events.CreateGroupParams{Subject: "Settled"}), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST /v1/commands = %d %s, want 202", code, body)
	}
	_, created := s.events.Terminal(t, "settle-group")
	g := created.GroupID
	must(t, s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Limit: 1, Throttle: 1, ThrottleCode: 130429}))
	defer func() { _ = s.sim.SetFaults(sim.Faults{}) }()
	if code, body := s.post(t, command(id, events.GetInviteLink, g, nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST /v1/commands = %d %s, want 202", code, body)
	}
	if _, res := s.events.Terminal(t, id); res.Outcome != events.OutcomeSucceeded {
		t.Fatalf("outcome %q (%+v), want succeeded after the throttle", res.Outcome, res.Error)
	}
	const name = "process groups.cmd.*.get_invite_link"
	spans := s.waitSpans(t, "two deliveries of "+id, func(all tracetest.SpanStubs) bool {
		n := 0
		for _, sp := range named(all, name) {
			if attr(sp, "groupflow.command.id") == id {
				n++
			}
		}
		return n == 2
	})
	var deliveries tracetest.SpanStubs
	for _, sp := range named(spans, name) {
		if attr(sp, "groupflow.command.id") == id {
			deliveries = append(deliveries, sp)
		}
	}
	slices.SortFunc(deliveries, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	first, second := deliveries[0], deliveries[1]
	wantAttrs(t, first, map[string]string{"messaging.nats.message.delivery_count": "1", "messaging.nats.message.settlement": "nak"})
	if d := attr(first, "messaging.nats.message.nak_delay"); d == "" || d == "0" {
		t.Errorf("first delivery: nak_delay %q, want the throttle's delay in seconds", d)
	}
	if first.Status.Code != codes.Error {
		t.Errorf("first delivery: status %v, want an error (the throttle)", first.Status)
	}
	// error.type is the error's class, not its Go type.
	wantAttrs(t, first, map[string]string{"error.type": "graph_throttled"})
	wantAttrs(t, second, map[string]string{"messaging.nats.message.delivery_count": "2", "messaging.nats.message.settlement": "ack"})
}

// checkLogs proves every log line about the given commands carries the
// trace id of the command's trace and a span id.
func (s *stack) checkLogs(t *testing.T, traces map[string]trace.TraceID) {
	t.Helper()
	seen := map[string]int{}
	for _, ln := range logLines(t, s.logs) {
		id, _ := ln["command_id"].(string)
		want, ok := traces[id]
		if !ok {
			continue
		}
		seen[id]++
		if ln["trace_id"] != want.String() || ln["span_id"] == nil || ln["span_id"] == "" {
			t.Errorf("log line %q of %s has trace_id %v span_id %v, want trace %s and a span", ln["msg"], id, ln["trace_id"], ln["span_id"], want)
		}
	}
	for id := range traces {
		if seen[id] == 0 {
			t.Errorf("no log line names command %s; the test proves nothing about its logs", id)
		}
	}
}

// waitSpans flushes until cond holds on every span exported so far: a
// span ends after the event it published is visible.
func (s *stack) waitSpans(t *testing.T, what string, cond func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		spans := s.flush(t)
		if cond(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans never showed %s; have %v", what, spanNames(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNamed waits until a span of each name has been exported — in
// trace tid unless it is zero — and returns all spans. A span ends only
// after its children, so naming the outermost ones of a flow suffices.
func (s *stack) waitNamed(t *testing.T, tid trace.TraceID, names ...string) tracetest.SpanStubs {
	t.Helper()
	return s.waitSpans(t, strings.Join(names, ", "), func(all tracetest.SpanStubs) bool {
		if tid.IsValid() {
			all = byTrace(all, tid)
		}
		for _, n := range names {
			if len(named(all, n)) == 0 {
				return false
			}
		}
		return true
	})
}

func byTrace(spans tracetest.SpanStubs, id trace.TraceID) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, sp := range spans {
		if sp.SpanContext.TraceID() == id {
			out = append(out, sp)
		}
	}
	return out
}

func named(spans tracetest.SpanStubs, name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, sp := range spans {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

// one returns the one span of kind and name, failing the test otherwise.
func one(t *testing.T, spans tracetest.SpanStubs, kind trace.SpanKind, name string) tracetest.SpanStub {
	t.Helper()
	var got tracetest.SpanStubs
	for _, sp := range named(spans, name) {
		if sp.SpanKind == kind {
			got = append(got, sp)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d %v spans named %q, want 1; spans: %v", len(got), kind, name, spanNames(spans))
	}
	return got[0]
}

func childOf(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.Parent.TraceID() != parent.SpanContext.TraceID() || child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("span %q has parent %s/%s, want %q (%s/%s)", child.Name, child.Parent.TraceID(), child.Parent.SpanID(),
			parent.Name, parent.SpanContext.TraceID(), parent.SpanContext.SpanID())
	}
}

func roots(spans tracetest.SpanStubs) tracetest.SpanStubs {
	ids := map[trace.SpanID]bool{}
	for _, sp := range spans {
		ids[sp.SpanContext.SpanID()] = true
	}
	var out tracetest.SpanStubs
	for _, sp := range spans {
		if !sp.Parent.IsValid() || !ids[sp.Parent.SpanID()] {
			out = append(out, sp)
		}
	}
	return out
}

func linksTo(sp tracetest.SpanStub, sc trace.SpanContext) bool {
	for _, l := range sp.Links {
		if l.SpanContext.TraceID() == sc.TraceID() && l.SpanContext.SpanID() == sc.SpanID() {
			return true
		}
	}
	return false
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, a := range sp.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

func wantAttrs(t *testing.T, sp tracetest.SpanStub, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := attr(sp, k); got != v {
			t.Errorf("span %q: %s = %q, want %q", sp.Name, k, got, v)
		}
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	out := make([]string, 0, len(spans))
	for _, sp := range spans {
		out = append(out, fmt.Sprintf("%s(%v %s)", sp.Name, sp.SpanKind, sp.SpanContext.TraceID().String()[:6]))
	}
	slices.Sort(out)
	return out
}

func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

func mustSpanContext(t *testing.T, traceID, spanID string) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

// links renders a span's links as trace/span ids.
func links(sp tracetest.SpanStub) []string {
	out := make([]string, 0, len(sp.Links))
	for _, l := range sp.Links {
		out = append(out, l.SpanContext.TraceID().String()+"/"+l.SpanContext.SpanID().String())
	}
	return out
}

package telemetry

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestInjectExtract(t *testing.T) {
	t.Parallel()

	t.Run("Continues the trace with lowercase keys", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tracer := b.tel.Tracer("test")

		ctx, parent := tracer.Start(context.Background(), "caller")
		member, _ := baggage.NewMember("tenant", "acme")
		bag, _ := baggage.New(member)
		ctx = baggage.ContextWithBaggage(ctx, bag)
		ts, err := trace.ParseTraceState("vendor=opaque")
		if err != nil {
			t.Fatal(err)
		}
		ctx = trace.ContextWithSpanContext(ctx, parent.SpanContext().WithTraceState(ts))

		h := nats.Header{}
		Inject(ctx, h)
		parent.End()

		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if got, want := strings.Join(keys, ","), "baggage,traceparent,tracestate"; got != want {
			t.Fatalf("header keys = %q, want %q", got, want)
		}

		ctx2 := Extract(context.Background(), h)
		_, child := tracer.Start(ctx2, "consumer")
		child.End()
		if got := baggage.FromContext(ctx2).Member("tenant").Value(); got != "acme" {
			t.Errorf("baggage tenant = %q, want %q", got, "acme")
		}

		s := spanNamed(t, b.ended(t), "consumer")
		if s.Parent.SpanID() != parent.SpanContext().SpanID() || s.SpanContext.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("consumer span parent = %s/%s, want %s/%s", s.Parent.TraceID(), s.Parent.SpanID(),
				parent.SpanContext().TraceID(), parent.SpanContext().SpanID())
		}
		if got := s.SpanContext.TraceState().Get("vendor"); got != "opaque" {
			t.Errorf("tracestate vendor = %q, want %q", got, "opaque")
		}
	})

	t.Run("Reads any letter case and writes one lowercase key", func(t *testing.T) {
		t.Parallel()
		const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		for _, key := range []string{"traceparent", "Traceparent", "TraceParent", "TRACEPARENT"} {
			h := nats.Header{key: {tp}}
			sc := trace.SpanContextFromContext(Extract(context.Background(), h))
			if got := sc.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("Extract from key %q: trace id = %q, want 4bf92f3577b34da6a3ce929d0e0e4736", key, got)
			}

			ctx := trace.ContextWithSpanContext(context.Background(), sc)
			Inject(ctx, h)
			if len(h) != 1 || h.Get("traceparent") != tp {
				t.Errorf("after Inject over key %q: header = %v, want only traceparent=%s", key, h, tp)
			}
		}
	})

	t.Run("Leaves a header without trace context alone", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		if got := Extract(ctx, nats.Header{"Nats-Msg-Id": {"x"}}); trace.SpanContextFromContext(got).IsValid() {
			t.Errorf("Extract found a span context in a header without one")
		}
		if got := Extract(ctx, nil); got != ctx {
			t.Errorf("Extract(nil header) returned a different context")
		}
		Inject(ctx, nil) // must not panic
	})
}

func TestTraceParent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, span := b.tel.Tracer("test").Start(context.Background(), "command")
	defer span.End()

	tp := TraceParent(ctx)
	want := fmt.Sprintf("00-%s-%s-01", span.SpanContext().TraceID(), span.SpanContext().SpanID())
	if tp != want {
		t.Fatalf("TraceParent = %q, want %q", tp, want)
	}
	link, ok := LinkFromTraceParent(tp)
	if !ok || !link.SpanContext.Equal(span.SpanContext().WithRemote(true)) {
		t.Errorf("LinkFromTraceParent(%q) = %v, %v; want a link to %v", tp, link.SpanContext, ok, span.SpanContext())
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if _, ok := LinkFromTraceParent(bad); ok {
			t.Errorf("LinkFromTraceParent(%q) ok, want not ok", bad)
		}
	}
	if got := trace.SpanContextFromContext(ContextWithTraceParent(context.Background(), tp)); got.SpanID() != span.SpanContext().SpanID() || !got.IsRemote() {
		t.Errorf("ContextWithTraceParent(%q) carries %v, want the remote span %v", tp, got, span.SpanContext())
	}
	if got := ContextWithTraceParent(ctx, "garbage"); got != ctx {
		t.Errorf("ContextWithTraceParent with a malformed value changed the context")
	}
	if got := TraceParent(context.Background()); got != "" {
		t.Errorf("TraceParent without a span = %q, want empty", got)
	}
	// It writes what the W3C propagator would, whatever the flags.
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled, trace.FlagsRandom, 0xff} {
		sc := span.SpanContext().WithTraceFlags(flags)
		c := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), c)
		if got := TraceParent(trace.ContextWithSpanContext(context.Background(), sc)); got != c["traceparent"] {
			t.Errorf("TraceParent with flags %02x = %q, want the propagator's %q", byte(flags), got, c["traceparent"])
		}
	}
}

// TestHeadersOnTheWire talks the NATS text protocol over TCP, as a client
// in another language does, to see the bytes that travel.
func TestHeadersOnTheWire(t *testing.T) {
	t.Parallel()
	srv := natsembed.RunTest(t)
	b := setup(t)
	tracer := b.tel.Tracer("test")

	t.Run("Go publisher writes lowercase keys", func(t *testing.T) {
		raw := dialRaw(t, srv.ClientURL())
		raw.send(t, "SUB wire.out 1\r\nPING\r\n")
		raw.expect(t, "PONG")

		nc := connect(t, srv.ClientURL())
		ctx, span := tracer.Start(context.Background(), "publisher")
		defer span.End()
		msg := nats.NewMsg("wire.out")
		Inject(ctx, msg.Header)
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}

		hdr := raw.readHMSG(t)
		wantLine := fmt.Sprintf("traceparent: 00-%s-%s-01", span.SpanContext().TraceID(), span.SpanContext().SpanID())
		if !strings.Contains(hdr, wantLine+"\r\n") {
			t.Errorf("header block on the wire:\n%s\nwant the line %q", hdr, wantLine)
		}
	})

	t.Run("An external publisher's mixed-case traceparent is continued", func(t *testing.T) {
		nc := connect(t, srv.ClientURL())
		sub, err := nc.SubscribeSync("wire.in")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}

		raw := dialRaw(t, srv.ClientURL())
		hdr := "NATS/1.0\r\nTraceParent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nBaggage: tenant=acme\r\n\r\n"
		raw.send(t, fmt.Sprintf("HPUB wire.in %d %d\r\n%s{}\r\nPING\r\n", len(hdr), len(hdr)+2, hdr))
		raw.expect(t, "PONG")

		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		ctx, span := StartDelivery(context.Background(), tracer, Delivery{Subject: m.Subject, Header: m.Header})
		span.End()
		if got := baggage.FromContext(ctx).Member("tenant").Value(); got != "acme" {
			t.Errorf("baggage tenant = %q, want acme", got)
		}
		s := spanNamed(t, b.ended(t), "process wire.in")
		if got := s.SpanContext.TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("trace id = %s, want the publisher's 0af7651916cd43dd8448eb211c80319c", got)
		}
		if got := s.Parent.SpanID().String(); got != "b7ad6b7169203331" {
			t.Errorf("parent span id = %s, want the publisher's b7ad6b7169203331", got)
		}
	})
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// rawConn is a bare NATS protocol client.
type rawConn struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, clientURL string) *rawConn {
	t.Helper()
	u, err := url.Parse(clientURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	t.Cleanup(func() { _ = conn.Close() }) // the test is over; nothing reads the connection again
	// A guard against a hang, not an assertion about speed.
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{conn: conn, r: bufio.NewReader(conn)}
	rc.expect(t, "INFO")
	rc.send(t, `CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}`+"\r\nPING\r\n")
	rc.expect(t, "PONG")
	return rc
}

func (rc *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(rc.conn, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expect reads protocol lines until one starts with prefix.
func (rc *rawConn) expect(t *testing.T, prefix string) string {
	t.Helper()
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %s: %v", prefix, err)
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("server error while waiting for %s: %s", prefix, line)
		}
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

// readHMSG reads one message with headers and returns its header block.
func (rc *rawConn) readHMSG(t *testing.T) string {
	t.Helper()
	fields := strings.Fields(rc.expect(t, "HMSG"))
	// HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
	hdrLen, err1 := strconv.Atoi(fields[len(fields)-2])
	total, err2 := strconv.Atoi(fields[len(fields)-1])
	if err1 != nil || err2 != nil {
		t.Fatalf("bad HMSG line %q", fields)
	}
	buf := make([]byte, total+2)
	if _, err := io.ReadFull(rc.r, buf); err != nil {
		t.Fatalf("read message: %v", err)
	}
	return string(buf[:hdrLen])
}

package system_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/services/content"
)

// TestTracingOneTracePerRequest completes a lesson through REST and checks that
// one trace holds the whole flow, link by link: the gateway's HTTP server span
// (the root), the lesson service's CompleteLesson server span below it, the
// PRODUCER "create lesson-events" span(s) outbox.Write started as its children,
// and the CONSUMER "process lesson-events" spans of the progress, vocabulary and
// analytics groups, each a child (through the traceparent stored with the
// outbox row) of the create span of the very event it processed. The relay's
// send span for the round that published the event links to its create span.
func TestTracingOneTracePerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	demo, err := content.Demo()
	if err != nil {
		t.Fatal(err)
	}
	m := boot(t, t.TempDir(), "")
	// Build installed the global SDK provider (telemetry.Setup); record every
	// span that ends from now on.
	tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("global TracerProvider is %T, not the SDK's", otel.GetTracerProvider())
	}
	exp := tracetest.NewInMemoryExporter()
	proc := sdktrace.NewSimpleSpanProcessor(exp)
	tp.RegisterSpanProcessor(proc)
	t.Cleanup(func() { tp.UnregisterSpanProcessor(proc) })

	waitFor(t, "the demo course", m.sys.DemoLoaded)
	tok, _ := m.signUp(t, "trace@example.com", "tracer", "Tracy")
	var courses lessonv1.ListCoursesResponse
	m.rest(t, 200, "GET", "/v1/courses", tok, nil, nil, &courses)
	var outline lessonv1.GetCourseResponse
	m.rest(t, 200, "GET", "/v1/courses/"+courses.GetCourses()[0].GetCourse().GetId(), tok, nil, nil, &outline)
	m.completeLesson(t, tok, outline.GetUnits()[0].GetLessons()[0].GetId(), demo.Course.GetUnits()[0].GetLessons()[0])

	groups := []string{"progress-service-group", "vocabulary-service-group", "analytics-service-group"}
	var problem string
	deadline := time.Now().Add(60 * time.Second)
	for {
		problem = checkCompletionTrace(exp.GetSpans(), groups)
		if problem == "" {
			if testing.Verbose() {
				t.Logf("spans recorded:\n%s", spanTree(exp.GetSpans()))
			}
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s\n\nspans recorded:\n%s", problem, spanTree(exp.GetSpans()))
}

// checkCompletionTrace returns "" when the spans hold the expected trace, or
// what is missing.
func checkCompletionTrace(spans tracetest.SpanStubs, groups []string) string {
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	// descends reports whether s's parent chain reaches root.
	descends := func(s tracetest.SpanStub, root trace.SpanID) bool {
		for range 64 {
			if s.SpanContext.SpanID() == root {
				return true
			}
			p, ok := byID[s.Parent.SpanID()]
			if !ok || !s.Parent.IsValid() {
				return false
			}
			s = p
		}
		return false
	}
	var gw *tracetest.SpanStub
	for i, s := range spans {
		if s.SpanKind == trace.SpanKindServer && strings.HasPrefix(s.Name, "POST ") && strings.HasSuffix(s.Name, ":complete") {
			gw = &spans[i]
		}
	}
	if gw == nil {
		return `no gateway server span "POST /v1/attempts/{attempt_id}:complete"`
	}
	if gw.Parent.IsValid() {
		return "the gateway span is not the root of its trace"
	}
	root, traceID := gw.SpanContext.SpanID(), gw.SpanContext.TraceID()
	var rpc *tracetest.SpanStub
	for i, s := range spans {
		if s.SpanKind == trace.SpanKindServer && s.Name == "puchi.lesson.v1.LessonService/CompleteLesson" && descends(s, root) {
			rpc = &spans[i]
		}
	}
	if rpc == nil {
		return "no CompleteLesson RPC server span below the gateway span " + traceID.String()
	}
	// The events the RPC wrote: one create span each, children of the RPC span.
	created := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanKind == trace.SpanKindProducer && s.Parent.SpanID() == rpc.SpanContext.SpanID() {
			if s.Name != "create lesson-events" || attr(s, "messaging.destination.name") != "lesson-events" ||
				attr(s, "messaging.operation.type") != "create" || attr(s, "messaging.message.id") == "" {
				return fmt.Sprintf("producer span %q below CompleteLesson is not a create span on lesson-events: %v", s.Name, s.Attributes)
			}
			created[s.SpanContext.SpanID()] = s
		}
	}
	if len(created) == 0 {
		return "no PRODUCER create span on lesson-events below the CompleteLesson span in trace " + traceID.String()
	}
	for _, g := range groups {
		found := false
		for _, s := range spans {
			if s.SpanKind != trace.SpanKindConsumer || s.Name != "process lesson-events" ||
				attr(s, "messaging.operation.type") != "process" || attr(s, "messaging.consumer.group.name") != g {
				continue
			}
			p, ok := created[s.Parent.SpanID()]
			if ok && s.SpanContext.TraceID() == traceID && attr(s, "messaging.message.id") == attr(p, "messaging.message.id") {
				found = true
			}
		}
		if !found {
			return fmt.Sprintf("no lesson-events consumer span of %s whose parent is the create span of its event in trace %s", g, traceID)
		}
	}
	// The relay's round that sent them links to their creation contexts. The
	// round may have sent rows of other topics too: its span is then just "send".
	for _, s := range spans {
		if s.SpanKind != trace.SpanKindClient || attr(s, "messaging.operation.type") != "send" ||
			(s.Name != "send lesson-events" && s.Name != "send") {
			continue
		}
		for _, l := range s.Links {
			if _, ok := created[l.SpanContext.SpanID()]; ok && l.SpanContext.TraceID() == traceID {
				return ""
			}
		}
	}
	return "no relay send span linked to a create span of trace " + traceID.String()
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// spanTree renders the spans as indented trees, one per trace.
func spanTree(spans tracetest.SpanStubs) string {
	children := map[trace.SpanID][]tracetest.SpanStub{}
	known := map[trace.SpanID]bool{}
	for _, s := range spans {
		known[s.SpanContext.SpanID()] = true
	}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if p := s.Parent.SpanID(); s.Parent.IsValid() && known[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	slices.SortFunc(roots, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	var b strings.Builder
	var walk func(s tracetest.SpanStub, depth int)
	walk = func(s tracetest.SpanStub, depth int) {
		fmt.Fprintf(&b, "%s%s [%s] span=%s", strings.Repeat("  ", depth), s.Name, s.SpanKind, s.SpanContext.SpanID())
		if g := attr(s, "messaging.consumer.group.name"); g != "" {
			fmt.Fprintf(&b, " group=%s", g)
		}
		if id := attr(s, "messaging.message.id"); id != "" {
			fmt.Fprintf(&b, " ce_id=%s", id)
		}
		for _, l := range s.Links {
			fmt.Fprintf(&b, " link=%s", l.SpanContext.SpanID())
		}
		if depth == 0 {
			fmt.Fprintf(&b, " trace=%s parent=%s", s.SpanContext.TraceID(), s.Parent.SpanID())
		}
		b.WriteString("\n")
		for _, c := range children[s.SpanContext.SpanID()] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}

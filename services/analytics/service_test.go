package analytics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

const testGroup = "analytics-service-group"

func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func event(t testing.TB, topic, user string, payload proto.Message, when time.Time) kafka.Message {
	t.Helper()
	return servicetest.Event(t, kafka.EventSpec{Topic: topic, Key: user, Subject: user, Payload: payload, Time: when})
}

// scenario is the activity of three learners; see wantOverview for the
// numbers it gives.
type scenario struct{ u1, u2, u3 string }

func newScenario() scenario {
	return scenario{uuid.NewString(), uuid.NewString(), uuid.NewString()}
}

func (sc scenario) events(t testing.TB) []kafka.Message {
	reg := func(u, when string) kafka.Message {
		return event(t, kafka.TopicUserEvents, u, &userv1.UserRegistered{UserId: u, RegisteredAt: timestamppb.New(at(t, when))}, at(t, when))
	}
	lesson := func(u string, payload proto.Message, when string) kafka.Message {
		topic := kafka.TopicUserLearningEvents
		if _, ok := payload.(*lessonv1.LessonCompleted); ok {
			topic = kafka.TopicLessonEvents
		}
		return event(t, topic, u, payload, at(t, when))
	}
	quiz := func(u string, passed bool, correct, total int32, when string) kafka.Message {
		return event(t, kafka.TopicQuizEvents, u, &quizv1.QuizSubmitted{UserId: u, AttemptId: uuid.NewString(), QuizId: "q",
			Passed: passed, CorrectCount: correct, QuestionCount: total}, at(t, when))
	}
	a1, a2, a3 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	return []kafka.Message{
		reg(sc.u1, "2025-03-10T08:00:00Z"),
		reg(sc.u2, "2025-03-10T09:00:00Z"),
		// The completion of a1 arrives before its start (other topic).
		lesson(sc.u1, &lessonv1.LessonCompleted{UserId: sc.u1, AttemptId: a1, LessonId: "l1"}, "2025-03-11T10:10:00Z"),
		lesson(sc.u1, &lessonv1.LessonStarted{UserId: sc.u1, AttemptId: a1, LessonId: "l1"}, "2025-03-11T10:00:00Z"),
		lesson(sc.u1, &lessonv1.ExerciseAnswered{UserId: sc.u1, AttemptId: a1, Correct: true}, "2025-03-11T10:01:00Z"),
		lesson(sc.u1, &lessonv1.ExerciseAnswered{UserId: sc.u1, AttemptId: a1, Correct: false}, "2025-03-11T10:02:00Z"),
		reg(sc.u3, "2025-03-11T12:00:00Z"),
		lesson(sc.u2, &lessonv1.LessonStarted{UserId: sc.u2, AttemptId: a2, LessonId: "l1"}, "2025-03-12T10:00:00Z"),
		quiz(sc.u2, true, 4, 5, "2025-03-12T11:00:00Z"),
		event(t, kafka.TopicVocabularyEvents, sc.u1, &vocabularyv1.WordReviewed{UserId: sc.u1, CardId: "c"}, at(t, "2025-03-17T09:00:00Z")),
		quiz(sc.u1, false, 1, 4, "2025-03-17T09:30:00Z"),
		event(t, kafka.TopicAnalyticsEvents, sc.u1, &analyticsv1.ClientEventReceived{UserId: sc.u1, Name: "screen.viewed",
			OccurredAt: timestamppb.New(at(t, "2025-03-17T10:00:00Z"))}, at(t, "2025-03-17T10:00:05Z")),
		// A notification is not activity; a completion without a seen start
		// is not in the funnel.
		event(t, kafka.TopicNotificationEvents, sc.u3, &notificationv1.NotificationCreated{}, at(t, "2025-03-18T08:00:00Z")),
		lesson(sc.u3, &lessonv1.LessonCompleted{UserId: sc.u3, AttemptId: a3, LessonId: "l1"}, "2025-03-18T09:00:00Z"),
	}
}

const (
	tRegistered = "puchi.user.v1.UserRegistered"
	tStarted    = "puchi.lesson.v1.LessonStarted"
	tCompleted  = "puchi.lesson.v1.LessonCompleted"
	tAnswered   = "puchi.lesson.v1.ExerciseAnswered"
	tQuiz       = "puchi.quiz.v1.QuizSubmitted"
	tReviewed   = "puchi.vocabulary.v1.WordReviewed"
	tNotified   = "puchi.notification.v1.NotificationCreated"
)

func wantOverview(t testing.TB) *analyticsv1.Overview {
	au := func(d, w, m int64) *analyticsv1.ActiveUsers {
		return &analyticsv1.ActiveUsers{Daily: d, Weekly: w, Monthly: m}
	}
	daily := []*analyticsv1.DailyMetrics{
		{Date: "2025-03-10", ActiveUsers: au(2, 2, 2), EventsByType: map[string]int64{tRegistered: 2}},
		{Date: "2025-03-11", ActiveUsers: au(2, 3, 3), EventsByType: map[string]int64{tRegistered: 1, tStarted: 1, tCompleted: 1, tAnswered: 2}},
		{Date: "2025-03-12", ActiveUsers: au(1, 3, 3), EventsByType: map[string]int64{tStarted: 1, tQuiz: 1}},
		{Date: "2025-03-13", ActiveUsers: au(0, 3, 3), EventsByType: map[string]int64{}},
		{Date: "2025-03-14", ActiveUsers: au(0, 3, 3), EventsByType: map[string]int64{}},
		{Date: "2025-03-15", ActiveUsers: au(0, 3, 3), EventsByType: map[string]int64{}},
		{Date: "2025-03-16", ActiveUsers: au(0, 3, 3), EventsByType: map[string]int64{}},
		{Date: "2025-03-17", ActiveUsers: au(1, 3, 3), EventsByType: map[string]int64{tReviewed: 1, tQuiz: 1, "client:screen.viewed": 1}},
		{Date: "2025-03-18", ActiveUsers: au(1, 3, 3), EventsByType: map[string]int64{tNotified: 1, tCompleted: 1}},
	}
	var retention []*analyticsv1.RetentionCohort
	for _, d := range []string{"2025-03-10", "2025-03-11", "2025-03-12", "2025-03-13", "2025-03-14", "2025-03-15", "2025-03-16", "2025-03-17", "2025-03-18"} {
		c := &analyticsv1.RetentionCohort{CohortDate: d}
		switch d {
		case "2025-03-10": // u1 back on the 11th and the 17th, u2 on neither
			c.Size, c.Day1Retained, c.Day7Retained, c.Day1Rate, c.Day7Rate = 2, 1, 1, 0.5, 0.5
		case "2025-03-11": // u3 back on the 18th only
			c.Size, c.Day7Retained, c.Day7Rate = 1, 1, 1
		}
		retention = append(retention, c)
	}
	return &analyticsv1.Overview{
		From: "2025-03-10", To: "2025-03-18", ActiveUsers: au(1, 3, 3), Daily: daily,
		LessonFunnel:    &analyticsv1.LessonFunnel{Started: 2, Completed: 1, CompletionRate: 0.5},
		Quizzes:         &analyticsv1.QuizMetrics{Submitted: 2, Passed: 1, PassRate: 0.5},
		AverageAccuracy: 6.0 / 11.0, Retention: retention,
		AsOf: timestamppb.New(at(t, "2025-03-18T09:00:00Z")),
	}
}

var testNow = time.Date(2025, 3, 20, 12, 0, 0, 0, time.UTC)

func newService(d *db.DB) (*Service, *kafka.Router) {
	s := New(d, Config{Now: func() time.Time { return testNow }})
	r := kafka.NewRouter()
	s.Subscribe(r, testGroup)
	return s, r
}

func admin() context.Context      { return servicetest.As(uuid.NewString(), auth.RoleAdmin) }
func as(u string) context.Context { return servicetest.As(u, auth.RoleLearner) }
func overviewReq() *analyticsv1.GetOverviewRequest {
	return &analyticsv1.GetOverviewRequest{From: "2025-03-10", To: "2025-03-18"}
}

func wantU1() *analyticsv1.LearnerSummary {
	return &analyticsv1.LearnerSummary{
		LessonsStarted: 1, LessonsCompleted: 1, ExercisesAnswered: 2, ExercisesCorrect: 1, Accuracy: 2.0 / 6.0,
		QuizzesSubmitted: 1, QuizzesPassed: 0, Reviews: 1, ActiveDays: 3,
		FirstActiveAt: timestamppb.New(time.Date(2025, 3, 10, 8, 0, 0, 0, time.UTC)),
		LastActiveAt:  timestamppb.New(time.Date(2025, 3, 17, 10, 0, 0, 0, time.UTC)),
	}
}

func TestEventsBuildProjections(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s, r := newService(d)
		sc := newScenario()
		for _, m := range sc.events(t) {
			servicetest.Deliver(t, r, m, 2) // redelivered: numbers unchanged
		}
		ov, err := s.GetOverview(admin(), overviewReq())
		if err != nil {
			t.Fatal(err)
		}
		if want := wantOverview(t); !proto.Equal(ov.GetOverview(), want) {
			t.Fatalf("overview\n got %v\nwant %v", ov.GetOverview(), want)
		}
		// Learners may not see the overview.
		if _, err := s.GetOverview(as(sc.u1), overviewReq()); apperr.KindOf(err) != apperr.KindForbidden {
			t.Fatalf("learner overview: %v", err)
		}
		sum, err := s.GetMySummary(as(sc.u1), &analyticsv1.GetMySummaryRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(sum.GetSummary(), wantU1()) {
			t.Fatalf("summary\n got %v\nwant %v", sum.GetSummary(), wantU1())
		}
		// Someone with no activity gets zeros.
		sum, err = s.GetMySummary(as(uuid.NewString()), &analyticsv1.GetMySummaryRequest{})
		if err != nil || !proto.Equal(sum.GetSummary(), &analyticsv1.LearnerSummary{}) {
			t.Fatalf("empty summary %v %v", sum, err)
		}
		// Defaults: the 30 days ending today.
		ov2, err := s.GetOverview(admin(), &analyticsv1.GetOverviewRequest{})
		if err != nil || ov2.GetOverview().GetFrom() != "2025-02-19" || ov2.GetOverview().GetTo() != "2025-03-20" || len(ov2.GetOverview().GetDaily()) != 30 {
			t.Fatalf("default span %v %v", ov2.GetOverview().GetFrom(), err)
		}
	})
}

func TestUserDeletedErasesLearner(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s, r := newService(d)
		sc := newScenario()
		for _, m := range sc.events(t) {
			servicetest.Deliver(t, r, m, 1)
		}
		before, err := s.GetOverview(admin(), overviewReq())
		if err != nil {
			t.Fatal(err)
		}
		del := event(t, kafka.TopicUserEvents, sc.u1, &userv1.UserDeleted{UserId: sc.u1}, at(t, "2025-03-19T00:00:00Z"))
		servicetest.Deliver(t, r, del, 2)
		// A late event of the deleted learner.
		late := event(t, kafka.TopicVocabularyEvents, sc.u1, &vocabularyv1.WordReviewed{UserId: sc.u1}, at(t, "2025-03-17T11:00:00Z"))
		servicetest.Deliver(t, r, late, 1)

		sum, err := s.GetMySummary(as(sc.u1), &analyticsv1.GetMySummaryRequest{})
		if err != nil || !proto.Equal(sum.GetSummary(), &analyticsv1.LearnerSummary{}) {
			t.Fatalf("summary after deletion: %v %v", sum, err)
		}
		for _, table := range []string{"active_days", "cohorts", "lesson_attempts", "learner_summaries"} {
			if n := servicetest.Count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, sc.u1); n != 0 {
				t.Errorf("%s still has %d rows of the deleted learner", table, n)
			}
		}
		after, err := s.GetOverview(admin(), overviewReq())
		if err != nil {
			t.Fatal(err)
		}
		// Aggregates keep their counts (the late review adds one event).
		b, a := before.GetOverview(), after.GetOverview()
		if !proto.Equal(a.GetActiveUsers(), b.GetActiveUsers()) || !proto.Equal(a.GetRetention()[0], b.GetRetention()[0]) ||
			!proto.Equal(a.GetLessonFunnel(), b.GetLessonFunnel()) || a.GetDaily()[7].GetEventsByType()[tReviewed] != 2 {
			t.Fatalf("aggregates changed\nbefore %v\nafter  %v", b, a)
		}
	})
}

// startServer serves s behind the platform's interceptors (authentication,
// protovalidate) and returns a client and an issuer for tokens.
func startServer(t *testing.T, s *Service) (analyticsv1.AnalyticsServiceClient, *auth.Issuer) {
	t.Helper()
	iss, ver := servicetest.Auth(t)
	conn := servicetest.Serve(t, grpcx.ServerConfig{Name: Name, Verifier: ver},
		func(r grpc.ServiceRegistrar) { analyticsv1.RegisterAnalyticsServiceServer(r, s) })
	return analyticsv1.NewAnalyticsServiceClient(conn), iss
}

func withToken(t *testing.T, iss *auth.Issuer, user, role string) context.Context {
	t.Helper()
	tok, _, err := iss.Issue(user, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func TestIngestEvents(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := time.Now().UTC().Truncate(time.Millisecond) // protovalidate checks against the wall clock
		s := New(d, Config{Now: func() time.Time { return now }})
		r := kafka.NewRouter()
		s.Subscribe(r, testGroup)
		client, iss := startServer(t, s)
		u := uuid.NewString()
		ctx := withToken(t, iss, u, auth.RoleLearner)
		good := func(name string) *analyticsv1.ClientEvent {
			return &analyticsv1.ClientEvent{Name: name, OccurredAt: timestamppb.New(now.Add(-time.Minute)),
				Properties: map[string]string{"screen": "home"}}
		}

		// Malformed batches are refused whole, naming the field.
		bad := []struct {
			req   *analyticsv1.IngestEventsRequest
			field string
		}{
			{&analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{good("screen.viewed"), good("Bad Name")}}, "events[1].name"},
			{&analyticsv1.IngestEventsRequest{}, "events"},
			{&analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{{Name: "x"}}}, "events[0].occurred_at"},
			{&analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{{Name: "x", OccurredAt: timestamppb.New(now.Add(-40 * 24 * time.Hour))}}}, "events[0].occurred_at"},
			{&analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{{Name: "x", OccurredAt: timestamppb.New(now), Properties: map[string]string{"Bad": "v"}}}}, "events[0].properties"},
		}
		for _, b := range bad {
			_, err := client.IngestEvents(ctx, b.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), b.field) {
				t.Errorf("%v: got %v, want InvalidArgument naming %s", b.req, err, b.field)
			}
		}
		// Oversized (domain check): many large properties.
		big := &analyticsv1.IngestEventsRequest{}
		for range 100 {
			e := good("big")
			for k := range 19 { // and "screen": the 20 allowed
				e.Properties[string(rune('a'+k))] = strings.Repeat("x", 256)
			}
			big.Events = append(big.Events, e)
		}
		if _, err := client.IngestEvents(ctx, big); status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "bytes") {
			t.Errorf("big batch: %v", err)
		}
		if n := servicetest.Count(t, d, `SELECT count(*) FROM outbox`); n != 0 {
			t.Fatalf("refused batches published %d events", n)
		}

		req := &analyticsv1.IngestEventsRequest{Events: []*analyticsv1.ClientEvent{good("screen.viewed"), good("audio.played")}, IdempotencyKey: "k1"}
		for range 2 { // a retry publishes nothing again
			resp, err := client.IngestEvents(ctx, req)
			if err != nil || resp.GetAccepted() != 2 {
				t.Fatalf("ingest: %v %v", resp, err)
			}
		}
		rows := servicetest.OutboxRows(t, d)
		servicetest.CheckOutbox(t, rows, kafka.TopicAnalyticsEvents, u,
			"puchi.analytics.v1.ClientEventReceived", "puchi.analytics.v1.ClientEventReceived")
		var ev analyticsv1.ClientEventReceived
		if err := proto.Unmarshal(rows[1].Value, &ev); err != nil || ev.GetUserId() != u || ev.GetName() != "audio.played" ||
			ev.GetProperties()["screen"] != "home" || !ev.GetReceivedAt().AsTime().Equal(now) {
			t.Fatalf("event %v %v", &ev, err)
		}
		// Consumed back, they count as client:<name>.
		for _, row := range rows {
			servicetest.Deliver(t, r, kafka.Message{Topic: row.Topic, Key: []byte(row.Key), Value: row.Value, Headers: row.Headers}, 2)
		}
		ov, err := client.GetOverview(withToken(t, iss, uuid.NewString(), auth.RoleAdmin), &analyticsv1.GetOverviewRequest{})
		if err != nil {
			t.Fatal(err)
		}
		last := ov.GetOverview().GetDaily()[len(ov.GetOverview().GetDaily())-1]
		if last.GetEventsByType()["client:audio.played"] != 1 || last.GetActiveUsers().GetDaily() != 1 {
			t.Fatalf("today %v", last)
		}
		// Admin-only RPCs over the wire: 403 for a learner.
		if _, err := client.GetOverview(ctx, &analyticsv1.GetOverviewRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("learner overview: %v", err)
		}
		if _, err := client.Rebuild(ctx, &analyticsv1.RebuildRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("learner rebuild: %v", err)
		}
		if _, err := client.GetOverview(withToken(t, iss, u, auth.RoleAdmin), &analyticsv1.GetOverviewRequest{From: "2025-03-10", To: "2025-03-01"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("reversed span: %v", err)
		}
	})
}

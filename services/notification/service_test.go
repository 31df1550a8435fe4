package notification

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

const testGroup = "notification-service-group"

const (
	ceCreated = "puchi.notification.v1.NotificationCreated"
	ceRead    = "puchi.notification.v1.NotificationRead"
)

type harness struct {
	t      *testing.T
	d      *db.DB
	s      *Service
	clock  *servicetest.Clock
	router *kafka.Router
}

func newHarness(t *testing.T, d *db.DB, now time.Time) *harness {
	t.Helper()
	clock := servicetest.NewClock(now)
	s := New(d, Config{Now: clock.Now, StreamPoll: 50 * time.Millisecond, StreamKeepAlive: time.Minute})
	r := kafka.NewRouter()
	s.Subscribe(r, testGroup)
	return &harness{t: t, d: d, s: s, clock: clock, router: r}
}

func at(t *testing.T, s string) time.Time { return mustTime(t, s) }

func event(t *testing.T, topic, key string, payload proto.Message, when time.Time) kafka.Message {
	t.Helper()
	return servicetest.Event(t, kafka.EventSpec{Topic: topic, Key: key, Subject: key, Payload: payload, Time: when})
}

// deliver hands every message to the router twice, as a redelivering consumer would.
func (h *harness) deliver(msgs ...kafka.Message) {
	h.t.Helper()
	for _, m := range msgs {
		servicetest.Deliver(h.t, h.router, m, 2)
	}
}

func as(user string) context.Context { return servicetest.As(user, auth.RoleLearner) }

var count = servicetest.Count

func registered(t *testing.T, user, tz string, when time.Time) kafka.Message {
	return event(t, kafka.TopicUserEvents, user, &userv1.UserRegistered{
		UserId: user, Email: user + "@example.com", Username: "u" + user[:8], DisplayName: "User", NativeLanguage: "vi",
		TargetLanguage: "en", Timezone: tz, DailyGoalXp: 20, RegisteredAt: timestamppb.New(when),
	}, when)
}

func progressEvent(t *testing.T, user string, p proto.Message, when time.Time) kafka.Message {
	return event(t, kafka.TopicProgressEvents, user, p, when)
}

func quizDone(t *testing.T, user, quiz string, passed bool, score, correct, total int32, when time.Time) kafka.Message {
	return event(t, kafka.TopicQuizEvents, user, &quizv1.QuizSubmitted{
		UserId: user, AttemptId: uuid.NewString(), QuizId: quiz, UnitId: "unit", ScorePercent: score, Passed: passed,
		CorrectCount: correct, QuestionCount: total, Perfect: correct == total, SubmittedAt: timestamppb.New(when),
		CourseId: "course-q", AttemptNumber: 1, FirstPass: passed,
	}, when)
}

func lessonDone(t *testing.T, user, course string, when time.Time) kafka.Message {
	return event(t, kafka.TopicLessonEvents, user, &lessonv1.LessonCompleted{
		UserId: user, AttemptId: uuid.NewString(), LessonId: uuid.NewString(), UnitId: "unit", CourseId: course,
		Score: 100, Accuracy: 1, XpReward: 10, CompletedAt: timestamppb.New(when), FirstCompletion: true,
		CorrectCount: 3, ExerciseCount: 3,
	}, when)
}

func published(t *testing.T, lesson, course, title string, when time.Time) kafka.Message {
	return event(t, kafka.TopicLessonEvents, lesson, &lessonv1.LessonPublished{
		LessonId: lesson, CourseId: course, UnitId: "unit", Title: title, Position: 2, PublishedAt: timestamppb.New(when),
	}, when)
}

func xpAwarded(t *testing.T, user string, when time.Time) kafka.Message {
	return progressEvent(t, user, &progressv1.XpAwarded{
		UserId: user, Amount: 10, Reason: progressv1.XpReason_XP_REASON_LESSON, SourceEventId: uuid.NewString(),
		TotalXp: 10, AwardedAt: timestamppb.New(when), SourceId: uuid.NewString(),
	}, when)
}

func (h *harness) list(user string, req *notificationv1.ListNotificationsRequest) *notificationv1.ListNotificationsResponse {
	h.t.Helper()
	resp, err := h.s.ListNotifications(as(user), req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

func titles(resp *notificationv1.ListNotificationsResponse) []string {
	var out []string
	for _, n := range resp.GetNotifications() {
		out = append(out, n.GetTitle())
	}
	return out
}

func createdEvents(t *testing.T, d *db.DB) []*notificationv1.NotificationCreated {
	t.Helper()
	var out []*notificationv1.NotificationCreated
	for _, r := range servicetest.OfType(servicetest.OutboxRows(t, d), ceCreated) {
		ev := &notificationv1.NotificationCreated{}
		if err := proto.Unmarshal(r.Value, ev); err != nil {
			t.Fatal(err)
		}
		if r.Topic != kafka.TopicNotificationEvents || r.Key != ev.GetUserId() || r.Subject != ev.GetUserId() {
			t.Errorf("NotificationCreated row %+v", r)
		}
		out = append(out, ev)
	}
	return out
}

// TestEventsCreateNotificationsOnce: every triggering event gives exactly one
// notification with the details, delivered twice and through a second group.
func TestEventsCreateNotificationsOnce(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-10T12:00:00Z")
		h := newHarness(t, d, now)
		u, follower, stranger := uuid.NewString(), uuid.NewString(), uuid.NewString()
		course, lesson := uuid.NewString(), uuid.NewString()
		msgs := []kafka.Message{
			registered(t, u, "Asia/Ho_Chi_Minh", now.Add(-time.Hour)),
			progressEvent(t, u, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "first_lesson", Title: "First steps",
				Description: "Complete your first lesson", UnlockedAt: timestamppb.New(now)}, now),
			progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 2, PreviousLevel: 1, TotalXp: 58, ReachedAt: timestamppb.New(now)}, now),
			progressEvent(t, u, &progressv1.DailyGoalReached{UserId: u, GoalXp: 30, TodayXp: 58, LocalDate: "2025-03-10",
				ReachedAt: timestamppb.New(now)}, now),
			quizDone(t, u, "quiz-1", true, 80, 4, 5, now),
			quizDone(t, u, "quiz-2", false, 20, 1, 5, now), // failed: nothing
			progressEvent(t, u, &progressv1.StreakLost{UserId: u, PreviousStreakDays: 3, LocalDate: "2025-03-09",
				LostAt: timestamppb.New(now)}, now),
			// follower follows the course by completing one of its lessons; stranger follows another.
			lessonDone(t, follower, course, now),
			lessonDone(t, stranger, uuid.NewString(), now),
			published(t, lesson, course, "At the market", now),
		}
		h.deliver(msgs...)

		got := h.list(u, &notificationv1.ListNotificationsRequest{})
		want := []string{"Your streak ended", "Quiz passed", "Daily goal reached", "Level 2!", "Achievement unlocked: First steps"}
		if !equalStrings(titles(got), want) || got.GetUnreadCount() != 5 {
			t.Fatalf("inbox %v (unread %d), want %v", titles(got), got.GetUnreadCount(), want)
		}
		quiz := got.GetNotifications()[1]
		if quiz.GetBody() != "You passed the quiz with a score of 80% (4 of 5 questions right)." ||
			quiz.GetData()["quiz_id"] != "quiz-1" || quiz.GetType() != notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED ||
			quiz.GetSourceEventId() != msgs[4].ID() || quiz.GetReadAt() != nil || !quiz.GetCreatedAt().AsTime().Equal(now) {
			t.Errorf("quiz notification %v", quiz)
		}
		if ach := got.GetNotifications()[4]; ach.GetData()["achievement_id"] != "first_lesson" ||
			ach.GetBody() != `You unlocked the achievement "First steps". Complete your first lesson.` {
			t.Errorf("achievement notification %v", ach)
		}
		f := h.list(follower, &notificationv1.ListNotificationsRequest{})
		if len(f.GetNotifications()) != 1 || f.GetNotifications()[0].GetTitle() != "New lesson: At the market" ||
			f.GetNotifications()[0].GetData()["lesson_id"] != lesson || f.GetNotifications()[0].GetSourceEventId() != msgs[9].ID() {
			t.Fatalf("follower inbox %v", f)
		}
		if s := h.list(stranger, &notificationv1.ListNotificationsRequest{}); len(s.GetNotifications()) != 0 {
			t.Fatalf("a learner who does not follow the course got %v", titles(s))
		}
		evs := createdEvents(t, d)
		if len(evs) != 6 {
			t.Fatalf("%d NotificationCreated events, want 6", len(evs))
		}
		if evs[0].GetUserId() != u || evs[0].GetType() != notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED ||
			evs[0].GetSourceEventId() != msgs[1].ID() || evs[0].GetNotificationId() == "" || evs[0].GetTitle() != "Achievement unlocked: First steps" {
			t.Errorf("first NotificationCreated %v", evs[0])
		}

		// A consumer group whose inbox never saw these events creates nothing more.
		other := kafka.NewRouter()
		h.s.Subscribe(other, "another-group")
		for _, m := range msgs {
			servicetest.Deliver(t, other, m, 1)
		}
		// And the same through a second instance of the service.
		second := New(d, Config{Now: h.clock.Now})
		third := kafka.NewRouter()
		second.Subscribe(third, "third-group")
		for _, m := range msgs {
			servicetest.Deliver(t, third, m, 1)
		}
		if n := count(t, d, `SELECT count(*) FROM notifications`); n != 6 {
			t.Fatalf("%d notifications after redelivery through other groups, want 6", n)
		}
		if n := len(createdEvents(t, d)); n != 6 {
			t.Fatalf("%d NotificationCreated events after redelivery, want 6", n)
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPreferencesMuteAndQuietHours(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-10T12:00:00Z") // 19:00 in Ho Chi Minh City
		h := newHarness(t, d, now)
		u := uuid.NewString()
		h.deliver(registered(t, u, "Asia/Ho_Chi_Minh", now.Add(-time.Hour)))

		p, err := h.s.GetPreferences(as(u), &notificationv1.GetPreferencesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetPreferences().GetTypes()) != len(Types) || p.GetPreferences().GetReminderTime() != "19:00" ||
			p.GetPreferences().GetTimezone() != "Asia/Ho_Chi_Minh" || p.GetPreferences().GetUpdatedAt() != nil ||
			p.GetPreferences().GetQuietHoursStart() != "" {
			t.Fatalf("default preferences %v", p)
		}
		for _, tp := range p.GetPreferences().GetTypes() {
			if !tp.GetEnabled() {
				t.Fatalf("type %v off by default", tp.GetType())
			}
		}
		start, end, rt := "22:00", "07:00", "20:15"
		up, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{
			Types:           []*notificationv1.TypePreference{{Type: notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP, Enabled: false}},
			QuietHoursStart: &start, QuietHoursEnd: &end, ReminderTime: &rt,
		})
		if err != nil {
			t.Fatal(err)
		}
		pr := up.GetPreferences()
		if pr.GetTypes()[1].GetType() != notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP || pr.GetTypes()[1].GetEnabled() ||
			!pr.GetTypes()[0].GetEnabled() || pr.GetQuietHoursStart() != "22:00" || pr.GetQuietHoursEnd() != "07:00" ||
			pr.GetReminderTime() != "20:15" || !pr.GetUpdatedAt().AsTime().Equal(now) {
			t.Fatalf("updated preferences %v", pr)
		}
		again, _ := h.s.GetPreferences(as(u), &notificationv1.GetPreferencesRequest{})
		if !proto.Equal(again.GetPreferences(), pr) {
			t.Fatalf("stored preferences %v, want %v", again.GetPreferences(), pr)
		}
		// A field left out keeps its value.
		up2, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{
			Types: []*notificationv1.TypePreference{{Type: notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED, Enabled: false}},
		})
		if err != nil || up2.GetPreferences().GetTypes()[1].GetEnabled() || up2.GetPreferences().GetTypes()[3].GetEnabled() ||
			up2.GetPreferences().GetReminderTime() != "20:15" || up2.GetPreferences().GetQuietHoursStart() != "22:00" {
			t.Fatalf("partial update %v %v", up2, err)
		}
		if _, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{QuietHoursStart: &start, QuietHoursEnd: &start}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("equal quiet hours: %v", err)
		}

		// Muted types produce none; others do.
		h.deliver(
			progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 3, PreviousLevel: 2, TotalXp: 130, ReachedAt: timestamppb.New(now)}, now),
			quizDone(t, u, "q", true, 100, 2, 2, now),
			progressEvent(t, u, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "a", Title: "A", UnlockedAt: timestamppb.New(now)}, now),
		)
		if got := titles(h.list(u, &notificationv1.ListNotificationsRequest{})); !equalStrings(got, []string{"Achievement unlocked: A"}) {
			t.Fatalf("with level-up and quiz muted: %v", got)
		}
		// Quiet hours (22:00–07:00 local): stored, marked silent.
		h.clock.Advance(4 * time.Hour) // 23:00 local
		h.deliver(progressEvent(t, u, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "b", Title: "B", UnlockedAt: timestamppb.New(now)}, now))
		if n := count(t, d, `SELECT count(*) FROM notifications WHERE user_id = ? AND silent = 1`, u); n != 1 {
			t.Fatalf("%d silent notifications, want 1", n)
		}
		if n := count(t, d, `SELECT count(*) FROM notifications WHERE user_id = ?`, u); n != 2 {
			t.Fatalf("%d notifications, want 2", n)
		}
	})
}

func TestInboxReadAndPaging(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-10T12:00:00Z")
		h := newHarness(t, d, now)
		u, other := uuid.NewString(), uuid.NewString()
		for i := range 5 {
			h.deliver(progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: int32(i + 2), PreviousLevel: int32(i + 1),
				TotalXp: 100, ReachedAt: timestamppb.New(now)}, now))
			h.clock.Advance(time.Minute)
		}
		h.deliver(progressEvent(t, other, &progressv1.LevelUp{UserId: other, Level: 2, PreviousLevel: 1, ReachedAt: timestamppb.New(now)}, now))

		// Pages of two, newest first.
		var seen []string
		token := ""
		for range 5 {
			resp := h.list(u, &notificationv1.ListNotificationsRequest{PageSize: 2, PageToken: token})
			seen = append(seen, titles(resp)...)
			if resp.GetUnreadCount() != 5 {
				t.Fatalf("unread count %d", resp.GetUnreadCount())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if !equalStrings(seen, []string{"Level 6!", "Level 5!", "Level 4!", "Level 3!", "Level 2!"}) {
			t.Fatalf("paged %v", seen)
		}
		if _, err := h.s.ListNotifications(as(u), &notificationv1.ListNotificationsRequest{PageToken: "nonsense"}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("bad token: %v", err)
		}

		all := h.list(u, &notificationv1.ListNotificationsRequest{}).GetNotifications()
		target := all[1].GetId() // Level 5
		// Another learner's notification is not found, and stays unread.
		if _, err := h.s.MarkRead(as(other), &notificationv1.MarkReadRequest{NotificationId: target}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("other learner marking: %v", err)
		}
		if _, err := h.s.MarkRead(as(u), &notificationv1.MarkReadRequest{NotificationId: uuid.NewString()}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("unknown id: %v", err)
		}
		h.clock.Advance(time.Minute)
		readAt := h.clock.Now()
		mr, err := h.s.MarkRead(as(u), &notificationv1.MarkReadRequest{NotificationId: target})
		if err != nil || mr.GetNotification().GetId() != target || !mr.GetNotification().GetReadAt().AsTime().Equal(readAt) {
			t.Fatalf("MarkRead %v %v", mr, err)
		}
		h.clock.Advance(time.Minute)
		again, err := h.s.MarkRead(as(u), &notificationv1.MarkReadRequest{NotificationId: target})
		if err != nil || !again.GetNotification().GetReadAt().AsTime().Equal(readAt) {
			t.Fatalf("MarkRead again %v %v", again, err)
		}
		unread := h.list(u, &notificationv1.ListNotificationsRequest{UnreadOnly: true})
		if unread.GetUnreadCount() != 4 || len(unread.GetNotifications()) != 4 || equalStrings(titles(unread)[1:2], []string{"Level 5!"}) {
			t.Fatalf("unread only %v (%d)", titles(unread), unread.GetUnreadCount())
		}

		// Mark all read up to Level 4's creation: it and the two older ones.
		ma, err := h.s.MarkAllRead(as(u), &notificationv1.MarkAllReadRequest{CreatedBefore: all[2].GetCreatedAt()})
		if err != nil || ma.GetMarkedCount() != 3 || ma.GetUnreadCount() != 1 {
			t.Fatalf("MarkAllRead before %v: %v %v", all[2].GetCreatedAt().AsTime(), ma, err)
		}
		ma, err = h.s.MarkAllRead(as(u), &notificationv1.MarkAllReadRequest{})
		if err != nil || ma.GetMarkedCount() != 1 || ma.GetUnreadCount() != 0 {
			t.Fatalf("MarkAllRead %v %v", ma, err)
		}
		if ma, err = h.s.MarkAllRead(as(u), &notificationv1.MarkAllReadRequest{}); err != nil || ma.GetMarkedCount() != 0 {
			t.Fatalf("MarkAllRead with nothing unread %v %v", ma, err)
		}
		if h.list(other, &notificationv1.ListNotificationsRequest{}).GetUnreadCount() != 1 {
			t.Fatal("the other learner's notification was marked read")
		}

		rows := servicetest.OfType(servicetest.OutboxRows(t, d), ceRead)
		servicetest.CheckOutbox(t, rows, kafka.TopicNotificationEvents, u, ceRead, ceRead, ceRead)
		var reads []*notificationv1.NotificationRead
		for _, r := range rows {
			ev := &notificationv1.NotificationRead{}
			if err := proto.Unmarshal(r.Value, ev); err != nil {
				t.Fatal(err)
			}
			reads = append(reads, ev)
		}
		if reads[0].GetNotificationId() != target || reads[0].GetAll() || reads[0].GetCount() != 1 ||
			!reads[0].GetReadAt().AsTime().Equal(readAt) || reads[1].GetNotificationId() != "" || !reads[1].GetAll() ||
			reads[1].GetCount() != 3 || reads[2].GetCount() != 1 {
			t.Fatalf("NotificationRead events %v", reads)
		}

		if _, err := h.s.ListNotifications(context.Background(), &notificationv1.ListNotificationsRequest{}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("anonymous list: %v", err)
		}
	})
}

// streamServer serves s on 127.0.0.1:0 through the platform's gRPC server and
// returns a client and a token maker.
func streamServer(t *testing.T, s *Service, iss *auth.Issuer, ver *auth.Verifier) (notificationv1.NotificationServiceClient, func(user string) context.Context) {
	t.Helper()
	conn := servicetest.Serve(t, grpcx.ServerConfig{Name: Name, Verifier: ver, GracefulTimeout: 100 * time.Millisecond},
		func(r grpc.ServiceRegistrar) { notificationv1.RegisterNotificationServiceServer(r, s) })
	return notificationv1.NewNotificationServiceClient(conn), func(user string) context.Context {
		tok, _, err := iss.Issue(user, auth.RoleLearner, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
}

// recv receives the stream's next message within a bounded wait.
func recv(t *testing.T, st grpc.ServerStreamingClient[notificationv1.StreamNotificationsResponse]) *notificationv1.StreamNotificationsResponse {
	t.Helper()
	type result struct {
		m   *notificationv1.StreamNotificationsResponse
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := st.Recv()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("stream: %v", r.err)
		}
		return r.m
	case <-time.After(10 * time.Second):
		t.Fatal("stream: no message within 10s")
	}
	return nil
}

func TestStreamReceivesNewNotifications(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-10T12:00:00Z") // 19:00 in Ho Chi Minh City
		h := newHarness(t, d, now)
		// This instance's streams poll once an hour: what they get quickly, the
		// commit hook pushed.
		h.s.cfg.StreamPoll = time.Hour
		iss, ver := servicetest.Auth(t)
		client, authed := streamServer(t, h.s, iss, ver)
		u := uuid.NewString()
		h.deliver(
			registered(t, u, "Asia/Ho_Chi_Minh", now.Add(-time.Hour)),
			progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 2, PreviousLevel: 1, ReachedAt: timestamppb.New(now)}, now),
		)

		ctx, cancel := context.WithCancel(authed(u))
		defer cancel()
		st, err := client.StreamNotifications(ctx, &notificationv1.StreamNotificationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if first := recv(t, st); first.GetNotification() != nil || first.GetUnreadCount() != 1 {
			t.Fatalf("opening keep-alive %v", first)
		}
		// Created after the stream opened: pushed at commit.
		h.clock.Advance(time.Minute)
		lvl3 := progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 3, PreviousLevel: 2, ReachedAt: timestamppb.New(now)}, now)
		h.deliver(lvl3)
		m := recv(t, st)
		if m.GetNotification().GetTitle() != "Level 3!" || m.GetNotification().GetSourceEventId() != lvl3.ID() || m.GetUnreadCount() != 2 {
			t.Fatalf("pushed %v", m)
		}

		// A second instance polling every 50ms, reconnecting with created_after.
		fast := New(d, Config{Now: h.clock.Now, StreamPoll: 50 * time.Millisecond, StreamKeepAlive: time.Hour})
		fastClient, _ := streamServer(t, fast, iss, ver)
		ctx2, cancel2 := context.WithCancel(authed(u))
		defer cancel2()
		st2, err := fastClient.StreamNotifications(ctx2, &notificationv1.StreamNotificationsRequest{
			CreatedAfter: timestamppb.New(now), // the backlog: Level 3 (Level 2 was created at now, not after)
		})
		if err != nil {
			t.Fatal(err)
		}
		if b := recv(t, st2); b.GetNotification().GetTitle() != "Level 3!" || b.GetUnreadCount() != 2 {
			t.Fatalf("backlog %v", b)
		}
		// Created by a third instance, which has no streams: found by the poll.
		other := New(d, Config{Now: h.clock.Now})
		r := kafka.NewRouter()
		other.Subscribe(r, testGroup)
		servicetest.Deliver(t, r, progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 4, PreviousLevel: 3, ReachedAt: timestamppb.New(now)}, now), 1)
		if m := recv(t, st2); m.GetNotification().GetTitle() != "Level 4!" || m.GetUnreadCount() != 3 {
			t.Fatalf("from another instance %v", m)
		}
		// The first stream gets it at its next wake, in order, before Level 5.
		h.deliver(progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 5, PreviousLevel: 4, ReachedAt: timestamppb.New(now)}, now))
		if m := recv(t, st); m.GetNotification().GetTitle() != "Level 4!" {
			t.Fatalf("first stream %v", m)
		}
		if m := recv(t, st); m.GetNotification().GetTitle() != "Level 5!" || m.GetUnreadCount() != 4 {
			t.Fatalf("first stream %v", m)
		}

		// Quiet hours 18:00–20:00 local (it is 19:01): kept in the inbox, not pushed.
		qs, qe := "18:00", "20:00"
		if _, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{QuietHoursStart: &qs, QuietHoursEnd: &qe}); err != nil {
			t.Fatal(err)
		}
		h.deliver(progressEvent(t, u, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "quiet", Title: "Quiet", UnlockedAt: timestamppb.New(now)}, now))
		h.clock.Advance(time.Hour) // 20:01 local: quiet hours over
		h.deliver(progressEvent(t, u, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "loud", Title: "Loud", UnlockedAt: timestamppb.New(now)}, now))
		if m := recv(t, st); m.GetNotification().GetTitle() != "Achievement unlocked: Loud" || m.GetUnreadCount() != 6 {
			t.Fatalf("after quiet hours %v", m)
		}

		// The clients go away: the streams end, the subscriptions are dropped.
		cancel()
		cancel2()
		deadline := time.Now().Add(10 * time.Second)
		for _, s := range []*Service{h.s, fast} {
			for {
				s.hub.mu.Lock()
				n := len(s.hub.subs)
				s.hub.mu.Unlock()
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("stream subscriptions left after the clients went away")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}

func TestKeepAliveAndAuth(t *testing.T) {
	d := dbtest.Open(t, db.DialectSQLite, migrations)
	s := New(d, Config{StreamKeepAlive: 20 * time.Millisecond, StreamPoll: time.Hour})
	iss, ver := servicetest.Auth(t)
	client, authed := streamServer(t, s, iss, ver)
	st, err := client.StreamNotifications(authed(uuid.NewString()), &notificationv1.StreamNotificationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if m := recv(t, st); m.GetNotification() != nil || m.GetUnreadCount() != 0 {
			t.Fatalf("keep-alive %v", m)
		}
	}
	anon, err := client.StreamNotifications(context.Background(), &notificationv1.StreamNotificationsRequest{})
	if err == nil {
		_, err = anon.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous stream: %v", err)
	}
}

func TestStreakReminder(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		// 11:59 UTC is 18:59 in Ho Chi Minh City.
		h := newHarness(t, d, at(t, "2025-03-10T11:59:00Z"))
		ctx := context.Background()
		inactive, active, muted, paris := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
		h.deliver(
			registered(t, inactive, "Asia/Ho_Chi_Minh", at(t, "2025-03-01T00:00:00Z")),
			registered(t, active, "Asia/Ho_Chi_Minh", at(t, "2025-03-01T00:00:00Z")),
			registered(t, muted, "Asia/Ho_Chi_Minh", at(t, "2025-03-01T00:00:00Z")),
			registered(t, paris, "Europe/Paris", at(t, "2025-03-01T00:00:00Z")),
			// inactive had a 4-day streak up to yesterday.
			progressEvent(t, inactive, &progressv1.StreakExtended{UserId: inactive, StreakDays: 4, LocalDate: "2025-03-09",
				ExtendedAt: timestamppb.New(at(t, "2025-03-09T03:00:00Z"))}, at(t, "2025-03-09T03:00:00Z")),
			// active earned XP this morning (local 2025-03-10 08:00).
			xpAwarded(t, active, at(t, "2025-03-10T01:00:00Z")),
		)
		if _, err := h.s.UpdatePreferences(as(muted), &notificationv1.UpdatePreferencesRequest{Types: []*notificationv1.TypePreference{
			{Type: typeReminder, Enabled: false}}}); err != nil {
			t.Fatal(err)
		}
		send := func(want int) {
			t.Helper()
			n, err := h.s.SendReminders(ctx)
			if err != nil || n != want {
				t.Fatalf("SendReminders at %s: %d %v, want %d", h.clock.Now(), n, err, want)
			}
		}
		send(0) // 18:59 local: not yet
		h.clock.Advance(time.Minute)
		send(1) // 19:00: the inactive learner only
		send(0) // once a day
		h.clock.Advance(30 * time.Minute)
		send(0)
		got := h.list(inactive, &notificationv1.ListNotificationsRequest{}).GetNotifications()
		if len(got) != 1 || got[0].GetType() != typeReminder || got[0].GetTitle() != "Keep your streak going" ||
			got[0].GetBody() != "You haven't practised today yet. Do a short lesson to keep your 4-day streak alive!" ||
			got[0].GetSourceEventId() != "" || got[0].GetData()["local_date"] != "2025-03-10" {
			t.Fatalf("reminder %v", got)
		}
		for _, u := range []string{active, muted, paris} {
			if n := len(h.list(u, &notificationv1.ListNotificationsRequest{}).GetNotifications()); n != 0 {
				t.Fatalf("learner %s got %d reminders", u, n)
			}
		}
		evs := createdEvents(t, d)
		if len(evs) != 1 || evs[0].GetUserId() != inactive || evs[0].GetType() != typeReminder || evs[0].GetSourceEventId() != "" {
			t.Fatalf("NotificationCreated %v", evs)
		}

		// 19:00 in Paris (18:00 UTC): the Paris learner; the others are done for the day.
		h.clock.Advance(at(t, "2025-03-10T18:00:00Z").Sub(h.clock.Now()))
		send(1)
		if n := len(h.list(paris, &notificationv1.ListNotificationsRequest{}).GetNotifications()); n != 1 {
			t.Fatalf("paris learner has %d notifications", n)
		}

		// The next local day: the inactive learner practised in the morning (activity
		// through a lesson), the active one did not.
		h.deliver(lessonDone(t, inactive, "c", at(t, "2025-03-11T02:00:00Z")))
		h.clock.Advance(at(t, "2025-03-11T12:00:00Z").Sub(h.clock.Now()))
		send(1)
		if n := len(h.list(active, &notificationv1.ListNotificationsRequest{}).GetNotifications()); n != 1 {
			t.Fatalf("active learner, inactive the next day: %d notifications", n)
		}
		if n := len(h.list(inactive, &notificationv1.ListNotificationsRequest{}).GetNotifications()); n != 1 {
			t.Fatalf("inactive learner, active the next day: %d notifications", n)
		}
		if n := count(t, d, `SELECT count(*) FROM reminders`); n != 3 {
			t.Fatalf("%d reminder rows, want 3", n)
		}

		// The component runs the loop once bound, and stops with its context.
		rem := NewReminders()
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rem.Run(runCtx) }()
		rem.bind(h.s)
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("reminder component did not stop")
		}
	})
}

func TestUserDeletedErasesEverything(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-10T12:00:00Z")
		h := newHarness(t, d, now)
		u, other := uuid.NewString(), uuid.NewString()
		course := uuid.NewString()
		lessonStarted := event(t, kafka.TopicUserLearningEvents, u, &lessonv1.LessonStarted{UserId: u, AttemptId: uuid.NewString(),
			LessonId: "lesson-a", StartedAt: timestamppb.New(now)}, now)
		h.deliver(
			registered(t, u, "Europe/Paris", now),
			lessonDone(t, u, course, now),
			lessonStarted,
			progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 2, PreviousLevel: 1, ReachedAt: timestamppb.New(now)}, now),
			progressEvent(t, other, &progressv1.LevelUp{UserId: other, Level: 2, PreviousLevel: 1, ReachedAt: timestamppb.New(now)}, now),
		)
		start, end := "22:00", "06:00"
		if _, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{QuietHoursStart: &start, QuietHoursEnd: &end,
			Types: []*notificationv1.TypePreference{{Type: notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_LOST}}}); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(30 * time.Hour) // 19:00 in Paris the next day, no activity yet
		if n, err := h.s.SendReminders(context.Background()); err != nil || n != 1 {
			t.Fatalf("reminders %d %v (the learner only: 18:00 for the other, in UTC)", n, err)
		}
		tables := []string{"learners", "notifications", "muted_types", "follows", "started_lessons", "reminders"}
		for _, table := range tables {
			if count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, u) == 0 {
				t.Fatalf("%s has no row for the learner before deletion", table)
			}
		}
		h.deliver(
			event(t, kafka.TopicUserEvents, u, &userv1.UserDeleted{UserId: u, DeletedAt: timestamppb.New(now)}, now),
			// Still in flight when the account was deleted.
			progressEvent(t, u, &progressv1.LevelUp{UserId: u, Level: 3, PreviousLevel: 2, ReachedAt: timestamppb.New(now)}, now),
			registered(t, u, "Europe/Paris", now),
			published(t, uuid.NewString(), course, "New", now),
		)
		for _, table := range tables {
			if n := count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, u); n != 0 {
				t.Errorf("%s keeps %d rows of the deleted learner", table, n)
			}
		}
		if n, err := h.s.SendReminders(context.Background()); err != nil || n != 0 {
			t.Fatalf("reminders after deletion %d %v", n, err)
		}
		if _, err := h.s.UpdatePreferences(as(u), &notificationv1.UpdatePreferencesRequest{}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("preferences of a deleted learner: %v", err)
		}
		if h.list(other, &notificationv1.ListNotificationsRequest{}).GetUnreadCount() != 1 {
			t.Fatal("the other learner lost notifications")
		}
	})
}

func TestEventWithoutUserIsPermanent(t *testing.T) {
	h := newHarness(t, dbtest.Open(t, db.DialectSQLite, migrations), time.Now())
	m := event(t, kafka.TopicProgressEvents, "", &progressv1.LevelUp{Level: 2}, time.Now())
	if err := h.router.Handle(context.Background(), &m); !kafka.IsPermanent(err) {
		t.Fatalf("LevelUp without user: %v", err)
	}
}

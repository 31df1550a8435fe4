package notification

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// Topics the notification service consumes: progress-events (achievements,
// levels, daily goals, lost streaks; XpAwarded and StreakExtended as activity
// for the reminder), quiz-events (quizzes passed), lesson-events (lessons
// published; LessonCompleted for activity and followed courses),
// user-learning-events (LessonStarted: followed courses) and user-events
// (time zones, erasure).
var Topics = []string{
	kafka.TopicProgressEvents, kafka.TopicQuizEvents, kafka.TopicLessonEvents,
	kafka.TopicUserLearningEvents, kafka.TopicUserEvents,
}

// Subscribe registers the event handlers on r for consumer group group. Each
// runs in the inbox transaction of its event: the notification, its
// NotificationCreated event (outbox) and the processed-event record commit
// together. The notification's UNIQUE (source_event_id, user_id) keeps it to
// one per event and learner even through another consumer group.
func (s *Service) Subscribe(r *kafka.Router, group string) {
	inbox.On(r, s.db, group, s.onAchievementUnlocked)
	inbox.On(r, s.db, group, s.onLevelUp)
	inbox.On(r, s.db, group, s.onDailyGoalReached)
	inbox.On(r, s.db, group, s.onStreakLost)
	inbox.On(r, s.db, group, s.onStreakExtended)
	inbox.On(r, s.db, group, s.onXpAwarded)
	inbox.On(r, s.db, group, s.onQuizSubmitted)
	inbox.On(r, s.db, group, s.onLessonPublished)
	inbox.On(r, s.db, group, s.onLessonCompleted)
	inbox.On(r, s.db, group, s.onLessonStarted)
	inbox.On(r, s.db, group, s.onUserRegistered)
	inbox.On(r, s.db, group, s.onUserProfileUpdated)
	inbox.On(r, s.db, group, s.onUserDeleted)
}

// eventTime is the event's own time, else its ce_time, else the Kafka timestamp.
func eventTime(ts *timestamppb.Timestamp, m *kafka.Message) time.Time {
	if ts != nil && ts.IsValid() && ts.AsTime().Unix() > 0 {
		return ts.AsTime().UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, m.Headers[kafka.HeaderTime]); err == nil {
		return t.UTC()
	}
	return m.Timestamp.UTC()
}

func missing(field string, m *kafka.Message) error {
	return kafka.Permanent(fmt.Errorf("notification: %s has no %s", m, field))
}

// learner makes sure the learner has a row and reports false for a deleted
// one, whose late events are dropped.
func (s *Service) learner(ctx context.Context, tx *db.Tx, userID string) (bool, error) {
	if erased, err := s.store.Erased(ctx, tx, userID); err != nil || erased {
		return false, err
	}
	return true, s.store.EnsureLearner(ctx, tx, userID)
}

// notify puts msg in the learner's inbox for the event sourceEventID ("" for
// the reminder) unless the learner was deleted, muted the type, or has it
// already; it publishes NotificationCreated and wakes the learner's streams
// once tx commits. It returns the notification and whether it was created.
func (s *Service) notify(ctx context.Context, tx *db.Tx, userID, sourceEventID string, msg Message) (Notification, bool, error) {
	if ok, err := s.learner(ctx, tx, userID); err != nil || !ok {
		return Notification{}, false, err
	}
	seq, err := s.store.NextSeq(ctx, tx, userID) // locks the learner until commit
	if err != nil {
		return Notification{}, false, err
	}
	l, _, err := s.store.Learner(ctx, tx, userID)
	if err != nil {
		return Notification{}, false, err
	}
	if !l.Prefs.Enabled(msg.Type) {
		return Notification{}, false, nil
	}
	now := s.cfg.Now().UTC().Truncate(time.Millisecond)
	n := Notification{
		ID: uuid.NewString(), UserID: userID, Seq: seq, Type: msg.Type, Title: msg.Title, Body: msg.Body, Data: msg.Data,
		CreatedAt: now, SourceEventID: sourceEventID, Silent: l.Prefs.Quiet.QuietAt(l.Prefs.Timezone, now),
	}
	if n.Data == nil {
		n.Data = map[string]string{}
	}
	fresh, err := s.store.InsertNotification(ctx, tx, n)
	if err != nil || !fresh {
		return Notification{}, false, err
	}
	ev, err := kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicNotificationEvents, Key: userID, Source: Name, Subject: userID, Time: now,
		Payload: &notificationv1.NotificationCreated{
			NotificationId: n.ID, UserId: userID, Type: n.Type, Title: n.Title, CreatedAt: timestamppb.New(now),
			SourceEventId: sourceEventID,
		},
	})
	if err != nil {
		return Notification{}, false, err
	}
	if err := outbox.Write(ctx, tx, ev); err != nil {
		return Notification{}, false, err
	}
	s.hub.touch(userID)
	return n, true, nil
}

func (s *Service) onAchievementUnlocked(ctx context.Context, tx *db.Tx, ev *progressv1.AchievementUnlocked, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	_, _, err := s.notify(ctx, tx, ev.GetUserId(), m.ID(), AchievementMessage(ev.GetAchievementId(), ev.GetTitle(), ev.GetDescription()))
	return err
}

func (s *Service) onLevelUp(ctx context.Context, tx *db.Tx, ev *progressv1.LevelUp, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	_, _, err := s.notify(ctx, tx, ev.GetUserId(), m.ID(), LevelUpMessage(ev.GetLevel(), ev.GetPreviousLevel(), ev.GetTotalXp()))
	return err
}

func (s *Service) onDailyGoalReached(ctx context.Context, tx *db.Tx, ev *progressv1.DailyGoalReached, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	if ok, err := s.learner(ctx, tx, ev.GetUserId()); err != nil || !ok {
		return err
	}
	if err := s.store.NoteActivity(ctx, tx, ev.GetUserId(), ev.GetLocalDate()); err != nil {
		return err
	}
	_, _, err := s.notify(ctx, tx, ev.GetUserId(), m.ID(), DailyGoalMessage(ev.GetGoalXp(), ev.GetTodayXp(), ev.GetLocalDate()))
	return err
}

func (s *Service) onStreakLost(ctx context.Context, tx *db.Tx, ev *progressv1.StreakLost, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	_, _, err := s.notify(ctx, tx, ev.GetUserId(), m.ID(), StreakLostMessage(ev.GetPreviousStreakDays(), ev.GetLocalDate()))
	return err
}

// onStreakExtended is the progress service's own "first activity of a local
// day": activity for the reminder, and the streak the reminder mentions.
func (s *Service) onStreakExtended(ctx context.Context, tx *db.Tx, ev *progressv1.StreakExtended, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	if ok, err := s.learner(ctx, tx, ev.GetUserId()); err != nil || !ok {
		return err
	}
	if err := s.store.NoteActivity(ctx, tx, ev.GetUserId(), ev.GetLocalDate()); err != nil {
		return err
	}
	return s.store.NoteStreak(ctx, tx, ev.GetUserId(), ev.GetStreakDays(), ev.GetLocalDate())
}

func (s *Service) onXpAwarded(ctx context.Context, tx *db.Tx, ev *progressv1.XpAwarded, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	return s.activity(ctx, tx, ev.GetUserId(), eventTime(ev.GetAwardedAt(), m))
}

// activity records learning activity at t, on the learner's local day.
func (s *Service) activity(ctx context.Context, tx *db.Tx, userID string, t time.Time) error {
	if ok, err := s.learner(ctx, tx, userID); err != nil || !ok {
		return err
	}
	l, _, err := s.store.Learner(ctx, tx, userID)
	if err != nil {
		return err
	}
	return s.store.NoteActivity(ctx, tx, userID, LocalDate(l.Prefs.Timezone, t))
}

func (s *Service) onQuizSubmitted(ctx context.Context, tx *db.Tx, ev *quizv1.QuizSubmitted, m *kafka.Message) error {
	u := ev.GetUserId()
	if u == "" {
		return missing("user_id", m)
	}
	if err := s.activity(ctx, tx, u, eventTime(ev.GetSubmittedAt(), m)); err != nil {
		return err
	}
	if ok, err := s.learner(ctx, tx, u); err != nil || !ok {
		return err
	}
	if ev.GetCourseId() != "" {
		if err := s.store.Follow(ctx, tx, u, ev.GetCourseId()); err != nil {
			return err
		}
	}
	if !ev.GetPassed() {
		return nil
	}
	msg := QuizPassedMessage(ev.GetQuizId(), ev.GetScorePercent(), ev.GetCorrectCount(), ev.GetQuestionCount(), ev.GetPerfect())
	msg.Data["attempt_id"] = ev.GetAttemptId()
	if ev.GetCourseId() != "" {
		msg.Data["course_id"] = ev.GetCourseId()
	}
	_, _, err := s.notify(ctx, tx, u, m.ID(), msg)
	return err
}

func (s *Service) onLessonCompleted(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonCompleted, m *kafka.Message) error {
	u := ev.GetUserId()
	if u == "" {
		return missing("user_id", m)
	}
	if err := s.activity(ctx, tx, u, eventTime(ev.GetCompletedAt(), m)); err != nil {
		return err
	}
	if ok, err := s.learner(ctx, tx, u); err != nil || !ok || ev.GetCourseId() == "" {
		return err
	}
	return s.store.Follow(ctx, tx, u, ev.GetCourseId())
}

func (s *Service) onLessonStarted(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonStarted, m *kafka.Message) error {
	u := ev.GetUserId()
	if u == "" {
		return missing("user_id", m)
	}
	if ok, err := s.learner(ctx, tx, u); err != nil || !ok || ev.GetLessonId() == "" {
		return err
	}
	return s.store.StartLesson(ctx, tx, u, ev.GetLessonId())
}

// onLessonPublished notifies every follower of the lesson's course, one
// notification each (sorted, so concurrent fan-outs lock learners in one order).
func (s *Service) onLessonPublished(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonPublished, m *kafka.Message) error {
	if ev.GetLessonId() == "" || ev.GetCourseId() == "" {
		return missing("lesson_id or course_id", m)
	}
	if err := s.store.SetLessonCourse(ctx, tx, ev.GetLessonId(), ev.GetCourseId()); err != nil {
		return err
	}
	followers, err := s.store.Followers(ctx, tx, ev.GetCourseId())
	if err != nil {
		return err
	}
	for _, u := range followers {
		msg := LessonPublishedMessage(ev.GetLessonId(), ev.GetCourseId(), ev.GetUnitId(), ev.GetTitle())
		if _, _, err := s.notify(ctx, tx, u, m.ID(), msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) onUserRegistered(ctx context.Context, tx *db.Tx, ev *userv1.UserRegistered, m *kafka.Message) error {
	return s.setProfile(ctx, tx, ev.GetUserId(), ev.GetTimezone(), eventTime(ev.GetRegisteredAt(), m), m)
}

func (s *Service) onUserProfileUpdated(ctx context.Context, tx *db.Tx, ev *userv1.UserProfileUpdated, m *kafka.Message) error {
	return s.setProfile(ctx, tx, ev.GetUserId(), ev.GetTimezone(), eventTime(ev.GetUpdatedAt(), m), m)
}

func (s *Service) setProfile(ctx context.Context, tx *db.Tx, userID, tz string, at time.Time, m *kafka.Message) error {
	if userID == "" {
		return missing("user_id", m)
	}
	if ok, err := s.learner(ctx, tx, userID); err != nil || !ok {
		return err
	}
	if !ValidTimezone(tz) {
		tz = DefaultTimezone
	}
	return s.store.SetTimezone(ctx, tx, userID, tz, at)
}

func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missing("user_id", m)
	}
	return s.store.Erase(ctx, tx, ev.GetUserId(), eventTime(ev.GetDeletedAt(), m))
}

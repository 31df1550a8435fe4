package quiz

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// The quiz service publishes QuizStarted and QuizSubmitted to quiz-events, keyed
// by the user id so that one learner's events stay in order. It consumes
// LessonCompleted from lesson-events (completed lessons unlock quizzes) and
// UserDeleted from user-events (erasure).

// Topics are the topics the service consumes.
var Topics = []string{kafka.TopicLessonEvents, kafka.TopicUserEvents}

func event(userID string, payload proto.Message, at time.Time) (kafka.Message, error) {
	return kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicQuizEvents, Key: userID, Source: Name, Subject: userID, Payload: payload, Time: at,
	})
}

func startedEvent(a Attempt) (kafka.Message, error) {
	return event(a.UserID, &quizv1.QuizStarted{
		UserId: a.UserID, AttemptId: a.ID, QuizId: a.QuizID, StartedAt: timestamppb.New(a.StartedAt),
		Deadline: timestamppb.New(a.Deadline), AttemptNumber: a.Number,
	}, a.StartedAt)
}

func submittedEvent(q Quiz, a Attempt, g Grading, firstPass bool) (kafka.Message, error) {
	return event(a.UserID, &quizv1.QuizSubmitted{
		UserId: a.UserID, AttemptId: a.ID, QuizId: q.ID, UnitId: q.UnitID, CourseId: q.CourseID, LessonId: q.LessonID,
		ScorePercent: g.ScorePercent, Passed: g.Passed, CorrectCount: int32(g.Correct),
		QuestionCount: int32(len(g.Feedback)), Perfect: g.Perfect(), SubmittedAt: timestamppb.New(*a.SubmittedAt),
		AttemptNumber: a.Number, FirstPass: firstPass,
	}, *a.SubmittedAt)
}

// registerHandlers mounts the event handlers on r; each runs at most once per
// event id for group (platform/inbox).
func (s *Service) registerHandlers(r *kafka.Router, group string) {
	inbox.On(r, s.db, group, s.onLessonCompleted)
	inbox.On(r, s.db, group, s.onUserDeleted)
}

// onLessonCompleted records the completed lesson, which may unlock quizzes.
// Completing a lesson again changes nothing.
func (s *Service) onLessonCompleted(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonCompleted, m *kafka.Message) error {
	if ev.GetUserId() == "" || ev.GetLessonId() == "" {
		return kafka.Permanent(fmt.Errorf("quiz: LessonCompleted without user_id or lesson_id: %s", m))
	}
	at := ev.GetCompletedAt().AsTime()
	if ev.GetCompletedAt() == nil {
		at = m.Timestamp
	}
	_, err := s.store.RecordCompletedLesson(ctx, tx, ev.GetUserId(), ev.GetLessonId(), at)
	return err
}

// onUserDeleted erases the learner's attempts and completed lessons.
func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return kafka.Permanent(fmt.Errorf("quiz: UserDeleted without user_id: %s", m))
	}
	return s.store.DeleteLearner(ctx, tx, ev.GetUserId())
}

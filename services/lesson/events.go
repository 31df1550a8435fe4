package lesson

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// The lesson service publishes LessonPublished and LessonCompleted to
// lesson-events, LessonStarted and ExerciseAnswered to user-learning-events. Every
// learner event is keyed (and subject-ed) by the user id, so one learner's events
// stay in order; LessonPublished is keyed by the lesson id. It consumes
// UserDeleted from user-events.

func learnerEvent(topic, userID string, payload proto.Message, at time.Time) (kafka.Message, error) {
	return kafka.NewEvent(kafka.EventSpec{Topic: topic, Key: userID, Source: Name, Subject: userID, Payload: payload, Time: at})
}

func publishedEvent(l Lesson) (kafka.Message, error) {
	at := l.UpdatedAt
	if l.PublishedAt != nil {
		at = *l.PublishedAt
	}
	return kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicLessonEvents, Key: l.ID, Source: Name, Time: at,
		Payload: &lessonv1.LessonPublished{
			LessonId: l.ID, CourseId: l.CourseID, UnitId: l.UnitID, Title: l.Title, Position: l.Position,
			PublishedAt: timestamppb.New(at),
		},
	})
}

func startedEvent(a Attempt) (kafka.Message, error) {
	return learnerEvent(kafka.TopicUserLearningEvents, a.UserID, &lessonv1.LessonStarted{
		UserId: a.UserID, AttemptId: a.ID, LessonId: a.LessonID, StartedAt: timestamppb.New(a.StartedAt),
	}, a.StartedAt)
}

func answeredEvent(a Attempt, r AnswerRecord) (kafka.Message, error) {
	return learnerEvent(kafka.TopicUserLearningEvents, a.UserID, &lessonv1.ExerciseAnswered{
		UserId: a.UserID, AttemptId: a.ID, LessonId: a.LessonID, ExerciseId: r.ExerciseID, Correct: r.Correct,
		AnsweredAt: timestamppb.New(r.AnsweredAt),
	}, r.AnsweredAt)
}

func completedEvent(a Attempt, l Lesson, first bool) (kafka.Message, error) {
	at := *a.CompletedAt
	return learnerEvent(kafka.TopicLessonEvents, a.UserID, &lessonv1.LessonCompleted{
		UserId: a.UserID, AttemptId: a.ID, LessonId: l.ID, UnitId: l.UnitID, CourseId: l.CourseID,
		Score: a.Score, Accuracy: a.Accuracy, XpReward: a.XPAwarded, Words: wordsToProto(l.Words),
		CompletedAt: timestamppb.New(at), FirstCompletion: first, CorrectCount: a.CorrectCount,
		ExerciseCount: a.ExerciseCount,
	}, at)
}

// registerHandlers mounts the consumers of the service's topics on r.
func (s *Service) registerHandlers(r *kafka.Router, group string) {
	inbox.On(r, s.db, group, s.onUserDeleted)
}

// onUserDeleted erases the learner's attempts, answers and completions. Running it
// again (another delivery with a new id) finds nothing and succeeds.
func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, _ *kafka.Message) error {
	if ev.GetUserId() == "" {
		return kafka.Permanent(fmt.Errorf("UserDeleted without user_id"))
	}
	return s.store.DeleteLearner(ctx, tx, ev.GetUserId())
}

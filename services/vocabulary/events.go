package vocabulary

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service"
)

// The vocabulary service publishes WordAdded, WordReviewed and WordMastered to
// vocabulary-events, keyed by the learner's id so that one learner's events stay
// in order. It consumes LessonCompleted (lesson-events: the lesson's words join
// the deck) and UserDeleted (user-events: the learner's deck is erased), each
// through the inbox, so a redelivered event has no second effect.

// Topics are the topics the service consumes.
var Topics = []string{kafka.TopicLessonEvents, kafka.TopicUserEvents}

func event(userID string, payload proto.Message, at time.Time) (kafka.Message, error) {
	return kafka.NewEvent(kafka.EventSpec{
		Topic: kafka.TopicVocabularyEvents, Key: userID, Source: Name, Subject: userID, Payload: payload, Time: at,
	})
}

func wordAddedEvent(c Card) (kafka.Message, error) {
	return event(c.UserID, &vocabularyv1.WordAdded{
		UserId: c.UserID, CardId: c.ID, Term: c.Term, Source: sourceToProto(c.Source), LessonId: c.LessonID,
		AddedAt: timestamppb.New(c.CreatedAt), Translation: c.Translation,
	}, c.CreatedAt)
}

func wordReviewedEvent(c Card, reviewID string, l ReviewLog) (kafka.Message, error) {
	return event(c.UserID, &vocabularyv1.WordReviewed{
		UserId: c.UserID, CardId: c.ID, Term: c.Term, Rating: vocabularyv1.Rating(l.Rating),
		ElapsedDays: int32(l.ElapsedDays), ScheduledDays: int32(l.After.ScheduledDays),
		StateBefore: vocabularyv1.CardState(l.Before.State), StateAfter: vocabularyv1.CardState(l.After.State),
		Stability: l.After.Stability, Difficulty: l.After.Difficulty, Reps: int32(l.After.Reps), Lapses: int32(l.After.Lapses),
		Due: timestamppb.New(l.After.Due), ReviewedAt: timestamppb.New(l.ReviewedAt), ReviewId: reviewID,
		StabilityBefore: l.Before.Stability, DifficultyBefore: l.Before.Difficulty, Step: int32(l.After.Step),
	}, l.ReviewedAt)
}

func wordMasteredEvent(c Card, at time.Time) (kafka.Message, error) {
	return event(c.UserID, &vocabularyv1.WordMastered{
		UserId: c.UserID, CardId: c.ID, Term: c.Term, MasteredAt: timestamppb.New(at),
	}, at)
}

// registerHandlers mounts the consumers on the service's router.
func (s *Service) registerHandlers(d service.Deps) {
	inbox.On(d.Router, d.DB, d.Group, s.onLessonCompleted)
	inbox.On(d.Router, d.DB, d.Group, s.onUserDeleted)
}

// onLessonCompleted adds the lesson's words to the learner's deck as new cards,
// one WordAdded per card added. Words already in the deck (from another lesson,
// a repeat of this one, or by hand) are left as they are.
func (s *Service) onLessonCompleted(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonCompleted, _ *kafka.Message) error {
	if _, err := uuid.Parse(ev.GetUserId()); err != nil {
		return kafka.Permanent(fmt.Errorf("LessonCompleted without a valid user_id %q", ev.GetUserId()))
	}
	now := s.now()
	for _, w := range ev.GetWords() {
		c, err := NewCard(uuid.Must(uuid.NewV7()).String(), ev.GetUserId(), Word{
			Term: w.GetTerm(), Translation: w.GetTranslation(), PartOfSpeech: w.GetPartOfSpeech(), Example: w.GetExample(),
			ExampleTranslation: w.GetExampleTranslation(), AudioMediaID: w.GetAudioMediaId(),
		}, SourceLesson, ev.GetLessonId(), now)
		var ae *apperr.Error
		if errors.As(err, &ae) {
			s.log.Warn("vocabulary: skipping a lesson word", "lesson_id", ev.GetLessonId(), "term", w.GetTerm(), "reason", ae.Reason)
			continue
		}
		if err != nil {
			return err
		}
		added, err := s.store.InsertCardIfNew(ctx, tx, c)
		if err != nil {
			return err
		}
		if !added {
			continue
		}
		msg, err := wordAddedEvent(c)
		if err != nil {
			return err
		}
		if err := outbox.Write(ctx, tx, msg); err != nil {
			return err
		}
	}
	return nil
}

// onUserDeleted erases the learner's cards and reviews.
func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, _ *kafka.Message) error {
	if ev.GetUserId() == "" {
		return kafka.Permanent(errors.New("UserDeleted without user_id"))
	}
	return s.store.DeleteUser(ctx, tx, ev.GetUserId())
}

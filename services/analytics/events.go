package analytics

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Topics the analytics service consumes: all of them.
var Topics = kafka.Topics

// Fact is what one consumed event brings to the projections.
type Fact struct {
	EventID string
	Type    string    // counted type: the ce_type, or "client:<name>"
	UserID  string    // the learner the event is about ("" none)
	At      time.Time // the event's time (client events: when it happened)
	// Activity: the event is something the learner did (not, e.g., a
	// notification sent to them or their deletion).
	Activity bool

	LessonStarted   string // attempt id
	LessonCompleted string // attempt id
	Exercise        *bool  // an ExerciseAnswered: correct?
	Quiz            *QuizResult
	Review          bool
	Registered      bool
	Deleted         bool
}

// QuizResult is what a QuizSubmitted brings.
type QuizResult struct {
	Passed             bool
	Correct, Questions int64
}

// targets picks the generations an event is applied to, read in the event's
// transaction.
type targets func(ctx context.Context, tx *db.Tx) ([]string, error)

// liveTargets: the current generation, plus the generation a rebuild is
// filling. Reading them in the handler's transaction makes the swap safe: an
// event handled before the swap commits lands in both the old and the new
// generation, one handled after in the new one only.
func (s *Service) liveTargets(ctx context.Context, tx *db.Tx) ([]string, error) {
	st, err := s.store.State(ctx, tx)
	if err != nil {
		return nil, err
	}
	if st.Building != "" {
		return []string{st.Current, st.Building}, nil
	}
	return []string{st.Current}, nil
}

// rebuildTargets: the rebuild's generation only, while it is still building
// (a failed or superseded rebuild's consumer writes nothing more).
func (s *Service) rebuildTargets(gen string) targets {
	return func(ctx context.Context, tx *db.Tx) ([]string, error) {
		st, err := s.store.State(ctx, tx)
		if err != nil {
			return nil, err
		}
		if st.Building != gen {
			return nil, nil
		}
		return []string{gen}, nil
	}
}

// Subscribe registers a handler for every event type of every topic on r,
// for consumer group group, writing the live generations.
func (s *Service) Subscribe(r *kafka.Router, group string) { s.subscribe(r, group, s.liveTargets) }

// subscribe registers one typed handler per known event type: the router only
// delivers registered types, so counting every type means registering every
// type. Each handler turns its event into a [Fact] and runs [Service.apply] in
// the inbox transaction. Types added to a proto later are skipped by the
// router until they are listed here; a rebuild then counts their history.
func (s *Service) subscribe(r *kafka.Router, group string, tg targets) {
	// user-events
	on(s, r, group, tg, func(ev *userv1.UserRegistered, f *Fact) {
		f.UserID, f.Registered = or(ev.GetUserId(), f.UserID), true
	})
	on(s, r, group, tg, func(ev *userv1.UserProfileUpdated, f *Fact) { f.UserID = or(ev.GetUserId(), f.UserID) })
	on(s, r, group, tg, func(ev *userv1.UserDeleted, f *Fact) {
		f.UserID, f.Deleted, f.Activity = or(ev.GetUserId(), f.UserID), true, false
	})
	// lesson-events, user-learning-events
	on(s, r, group, tg, func(_ *lessonv1.LessonPublished, f *Fact) {})
	on(s, r, group, tg, func(ev *lessonv1.LessonStarted, f *Fact) {
		f.UserID, f.LessonStarted = or(ev.GetUserId(), f.UserID), ev.GetAttemptId()
	})
	on(s, r, group, tg, func(ev *lessonv1.ExerciseAnswered, f *Fact) {
		c := ev.GetCorrect()
		f.UserID, f.Exercise = or(ev.GetUserId(), f.UserID), &c
	})
	on(s, r, group, tg, func(ev *lessonv1.LessonCompleted, f *Fact) {
		f.UserID, f.LessonCompleted = or(ev.GetUserId(), f.UserID), ev.GetAttemptId()
	})
	// quiz-events
	on(s, r, group, tg, func(ev *quizv1.QuizStarted, f *Fact) { f.UserID = or(ev.GetUserId(), f.UserID) })
	on(s, r, group, tg, func(ev *quizv1.QuizSubmitted, f *Fact) {
		f.UserID = or(ev.GetUserId(), f.UserID)
		f.Quiz = &QuizResult{Passed: ev.GetPassed(), Correct: int64(max(ev.GetCorrectCount(), 0)), Questions: int64(max(ev.GetQuestionCount(), 0))}
	})
	// vocabulary-events
	on(s, r, group, tg, func(ev *vocabularyv1.WordAdded, f *Fact) { f.UserID = or(ev.GetUserId(), f.UserID) })
	on(s, r, group, tg, func(ev *vocabularyv1.WordReviewed, f *Fact) {
		f.UserID, f.Review = or(ev.GetUserId(), f.UserID), true
	})
	on(s, r, group, tg, func(ev *vocabularyv1.WordMastered, f *Fact) { f.UserID = or(ev.GetUserId(), f.UserID) })
	// progress-events: consequences of learner activity.
	on(s, r, group, tg, func(*progressv1.XpAwarded, *Fact) {})
	on(s, r, group, tg, func(*progressv1.LevelUp, *Fact) {})
	on(s, r, group, tg, func(*progressv1.StreakExtended, *Fact) {})
	on(s, r, group, tg, func(*progressv1.StreakFrozen, *Fact) {})
	on(s, r, group, tg, func(*progressv1.StreakLost, *Fact) {})
	on(s, r, group, tg, func(*progressv1.DailyGoalReached, *Fact) {})
	on(s, r, group, tg, func(*progressv1.AchievementUnlocked, *Fact) {})
	// media-events
	on(s, r, group, tg, func(*mediav1.MediaUploaded, *Fact) {})
	on(s, r, group, tg, func(*mediav1.MediaProcessed, *Fact) {})
	on(s, r, group, tg, func(*mediav1.MediaDeleted, *Fact) {})
	// notification-events: a notification is sent to a learner, not done by
	// them; reading one is.
	on(s, r, group, tg, func(_ *notificationv1.NotificationCreated, f *Fact) { f.Activity = false })
	on(s, r, group, tg, func(*notificationv1.NotificationRead, *Fact) {})
	// analytics-events
	on(s, r, group, tg, func(ev *analyticsv1.ClientEventReceived, f *Fact) {
		f.UserID, f.Type = or(ev.GetUserId(), f.UserID), "client:"+ev.GetName()
		if t := ev.GetOccurredAt(); t.IsValid() && t.AsTime().Unix() > 0 {
			f.At = t.AsTime().UTC()
		}
	})
}

// on registers, through the inbox, a handler for T that builds the event's
// Fact (base: ce_type, ce_subject, ce_time, activity when it has a subject),
// lets fill complete it from the payload, and applies it.
func on[T proto.Message](s *Service, r *kafka.Router, group string, tg targets, fill func(ev T, f *Fact)) {
	inbox.On(r, s.db, group, func(ctx context.Context, tx *db.Tx, ev T, m *kafka.Message) error {
		f := Fact{EventID: m.ID(), Type: m.Type(), UserID: m.Subject(), At: eventTime(m), Activity: true}
		fill(ev, &f)
		if f.UserID == "" {
			f.Activity = false
		}
		if f.EventID == "" {
			return kafka.Permanent(fmt.Errorf("analytics: %s has no ce_id", m))
		}
		gens, err := tg(ctx, tx)
		if err != nil {
			return err
		}
		return s.apply(ctx, tx, gens, f)
	})
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// eventTime is the event's ce_time, else the record's timestamp: days follow
// the events, never the wall clock, so that a replay computes the same result.
func eventTime(m *kafka.Message) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, m.Headers[kafka.HeaderTime]); err == nil {
		return t.UTC()
	}
	return m.Timestamp.UTC()
}

// apply applies f to each generation of gens once (the applied_events row is
// the per-generation guard). A deleted learner's events are applied under
// their pseudonym and leave no summary.
func (s *Service) apply(ctx context.Context, tx *db.Tx, gens []string, f Fact) error {
	if f.Deleted && f.UserID != "" {
		if err := s.store.MarkErased(ctx, tx, f.UserID, f.At); err != nil {
			return err
		}
	}
	summary := f.UserID != ""
	if f.UserID != "" {
		pseudo, err := s.store.Pseudonym(ctx, tx, f.UserID)
		if err != nil {
			return err
		}
		if pseudo != "" {
			if f.Deleted {
				for _, g := range gens {
					if err := s.store.Erase(ctx, tx, g, f.UserID, pseudo); err != nil {
						return err
					}
				}
			}
			f.UserID, summary = pseudo, false
		}
	}
	for _, g := range gens {
		fresh, err := s.store.MarkApplied(ctx, tx, g, f.EventID)
		if err != nil {
			return err
		}
		if !fresh {
			continue
		}
		if err := s.store.Project(ctx, tx, g, f, summary); err != nil {
			return err
		}
	}
	return nil
}

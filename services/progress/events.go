package progress

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// Topics the progress service consumes. Everything it knows comes from them.
var Topics = []string{kafka.TopicLessonEvents, kafka.TopicQuizEvents, kafka.TopicVocabularyEvents, kafka.TopicUserEvents}

// Subscribe registers the event handlers on r for consumer group group. Each runs
// in the inbox transaction of its event: its effect, the events it publishes
// (outbox) and the processed-event record commit together.
func (s *Service) Subscribe(r *kafka.Router, group string) {
	inbox.On(r, s.db, group, s.onLessonCompleted)
	inbox.On(r, s.db, group, s.onQuizSubmitted)
	inbox.On(r, s.db, group, s.onWordReviewed)
	inbox.On(r, s.db, group, s.onWordMastered)
	inbox.On(r, s.db, group, s.onUserRegistered)
	inbox.On(r, s.db, group, s.onUserProfileUpdated)
	inbox.On(r, s.db, group, s.onUserDeleted)
}

// eventTime is the triggering event's own time (completed_at, …), else its ce_time:
// days, streaks and weeks follow it, never the wall clock, so a replay computes the
// same result.
func eventTime(ts *timestamppb.Timestamp, m *kafka.Message) time.Time {
	if ts != nil && ts.IsValid() && ts.AsTime().Unix() > 0 {
		return ts.AsTime().UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, m.Headers[kafka.HeaderTime]); err == nil {
		return t.UTC()
	}
	return m.Timestamp.UTC()
}

func missingUser(m *kafka.Message) error {
	return kafka.Permanent(fmt.Errorf("progress: %s has no user_id", m))
}

func (s *Service) onLessonCompleted(ctx context.Context, tx *db.Tx, ev *lessonv1.LessonCompleted, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missingUser(m)
	}
	return s.apply(ctx, tx, credit{
		userID: ev.GetUserId(), eventID: m.ID(), sourceID: ev.GetAttemptId(), reason: progressv1.XpReason_XP_REASON_LESSON,
		at: eventTime(ev.GetCompletedAt(), m), xp: max(ev.GetXpReward(), 0),
		items: []item{{itemLesson, ev.GetLessonId()}},
		gain:  Gain{Lessons: 1, Correct: int64(max(ev.GetCorrectCount(), 0)), Graded: int64(max(ev.GetExerciseCount(), 0))},
	})
}

func (s *Service) onQuizSubmitted(ctx context.Context, tx *db.Tx, ev *quizv1.QuizSubmitted, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missingUser(m)
	}
	c := credit{
		userID: ev.GetUserId(), eventID: m.ID(), sourceID: ev.GetAttemptId(), reason: progressv1.XpReason_XP_REASON_QUIZ,
		at: eventTime(ev.GetSubmittedAt(), m), xp: QuizXP(s.cfg.QuizPassXP, s.cfg.QuizPerfectBonusXP, ev.GetFirstPass(), ev.GetPerfect()),
		gain: Gain{Quizzes: 1, Perfect: ev.GetPerfect(),
			Correct: int64(max(ev.GetCorrectCount(), 0)), Graded: int64(max(ev.GetQuestionCount(), 0))},
	}
	if ev.GetPassed() {
		c.items = []item{{itemQuiz, ev.GetQuizId()}}
	}
	return s.apply(ctx, tx, c)
}

// Graduated reports whether a review moved a card from new or learning to review:
// the review that makes a word learned.
func Graduated(before, after vocabularyv1.CardState) bool {
	return after == vocabularyv1.CardState_CARD_STATE_REVIEW &&
		(before == vocabularyv1.CardState_CARD_STATE_NEW || before == vocabularyv1.CardState_CARD_STATE_LEARNING)
}

func (s *Service) onWordReviewed(ctx context.Context, tx *db.Tx, ev *vocabularyv1.WordReviewed, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missingUser(m)
	}
	c := credit{
		userID: ev.GetUserId(), eventID: m.ID(), sourceID: ev.GetCardId(), reason: progressv1.XpReason_XP_REASON_REVIEW,
		at: eventTime(ev.GetReviewedAt(), m), xp: s.cfg.ReviewXP, gain: Gain{Reviews: 1},
	}
	if Graduated(ev.GetStateBefore(), ev.GetStateAfter()) {
		c.items = []item{{itemLearned, ev.GetCardId()}}
		c.xpIfNew = s.cfg.GraduationXP // the card's first graduation earns GraduationXP instead
	}
	return s.apply(ctx, tx, c)
}

func (s *Service) onWordMastered(ctx context.Context, tx *db.Tx, ev *vocabularyv1.WordMastered, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missingUser(m)
	}
	return s.apply(ctx, tx, credit{
		userID: ev.GetUserId(), eventID: m.ID(), sourceID: ev.GetCardId(), at: eventTime(ev.GetMasteredAt(), m),
		noLedger: true, items: []item{{itemMastered, ev.GetCardId()}},
	})
}

func (s *Service) onUserRegistered(ctx context.Context, tx *db.Tx, ev *userv1.UserRegistered, m *kafka.Message) error {
	return s.setProfile(ctx, tx, ev.GetUserId(), ev.GetTimezone(), ev.GetDailyGoalXp(), m)
}

func (s *Service) onUserProfileUpdated(ctx context.Context, tx *db.Tx, ev *userv1.UserProfileUpdated, m *kafka.Message) error {
	return s.setProfile(ctx, tx, ev.GetUserId(), ev.GetTimezone(), ev.GetDailyGoalXp(), m)
}

func (s *Service) setProfile(ctx context.Context, tx *db.Tx, userID, tz string, goal int32, m *kafka.Message) error {
	if userID == "" {
		return missingUser(m)
	}
	if erased, err := s.store.Erased(ctx, tx, userID); err != nil || erased {
		return err
	}
	l, err := s.store.LockLearner(ctx, tx, userID)
	if err != nil {
		return err
	}
	l.SetProfile(tz, goal)
	return s.store.SaveLearner(ctx, tx, l)
}

func (s *Service) onUserDeleted(ctx context.Context, tx *db.Tx, ev *userv1.UserDeleted, m *kafka.Message) error {
	if ev.GetUserId() == "" {
		return missingUser(m)
	}
	return s.store.Erase(ctx, tx, ev.GetUserId(), eventTime(ev.GetDeletedAt(), m))
}

// item is a thing counted once per learner (a lesson completed, a quiz passed, a
// card learned or mastered).
type item struct{ kind, id string }

// credit is what one consumed event brings, before the distinct sets are checked.
type credit struct {
	userID, eventID, sourceID string
	reason                    progressv1.XpReason
	at                        time.Time
	xp                        int32
	xpIfNew                   int32 // > 0: the XP when items[0] is new (a first graduation)
	items                     []item
	gain                      Gain
	noLedger                  bool // not an XP event (WordMastered)
}

// apply is the one path of every learning event: ledger row (the replay guard),
// distinct sets, the domain's [Learner.Apply], storage, and the outbox events of
// every state change, all in tx.
func (s *Service) apply(ctx context.Context, tx *db.Tx, c credit) error {
	if erased, err := s.store.Erased(ctx, tx, c.userID); err != nil || erased {
		return err // a deleted learner's late events are dropped
	}
	l, err := s.store.LockLearner(ctx, tx, c.userID)
	if err != nil {
		return err
	}
	date := LocalDate(l.Timezone, c.at)
	if !c.noLedger {
		// The ledger row is the replay guard, written first: an event already in
		// the ledger (its inbox record forgotten, or re-sent) changes nothing.
		fresh, err := s.store.InsertLedger(ctx, tx, LedgerRow{
			SourceEventID: c.eventID, UserID: c.userID, Amount: c.xp, Reason: c.reason.String(), SourceID: c.sourceID,
			At: c.at, LocalDate: date, WeekStart: WeekKey(c.at),
		})
		if err != nil || !fresh {
			return err
		}
	}
	g := c.gain
	g.At = c.at
	for i, it := range c.items {
		if it.id == "" {
			continue
		}
		fresh, err := s.store.AddItem(ctx, tx, c.userID, it.kind, it.id)
		if err != nil {
			return err
		}
		if !fresh {
			continue
		}
		switch it.kind {
		case itemLesson:
			g.NewLesson = true
		case itemQuiz:
			g.NewQuizPass = true
		case itemLearned:
			g.NewWordLearned = true
			if i == 0 && c.xpIfNew > 0 && c.xpIfNew != c.xp {
				c.xp = c.xpIfNew
				if err := s.store.SetLedgerAmount(ctx, tx, c.eventID, c.xp); err != nil {
					return err
				}
			}
		case itemMastered:
			g.NewWordMastered = true
		}
	}
	g.XP = c.xp
	day, err := s.store.Day(ctx, tx, c.userID, date)
	if err != nil {
		return err
	}
	held, err := s.store.Unlocked(ctx, tx, c.userID)
	if err != nil {
		return err
	}
	unlocked := make(map[string]bool, len(held))
	for id := range held {
		unlocked[id] = true
	}
	out := l.Apply(&day, g, unlocked, s.rules)
	if err := s.store.SaveLearner(ctx, tx, l); err != nil {
		return err
	}
	if err := s.store.SaveDay(ctx, tx, c.userID, out.Day); err != nil {
		return err
	}
	if out.XP > 0 {
		if err := s.store.AddWeeklyXP(ctx, tx, c.userID, WeekKey(c.at), out.XP, c.at); err != nil {
			return err
		}
	}
	for _, a := range out.Unlocked {
		if err := s.store.Unlock(ctx, tx, c.userID, a.ID, c.at); err != nil {
			return err
		}
	}
	msgs, err := outcomeEvents(c, l, out)
	if err != nil {
		return err
	}
	return outbox.Write(ctx, tx, msgs...)
}

// outcomeEvents turns an outcome into its progress-events, in order: XpAwarded,
// LevelUp, StreakLost or StreakFrozen, StreakExtended, DailyGoalReached,
// AchievementUnlocked.
func outcomeEvents(c credit, l Learner, out Outcome) ([]kafka.Message, error) {
	at := timestamppb.New(c.at)
	var payloads []proto.Message
	if out.XP > 0 {
		payloads = append(payloads, &progressv1.XpAwarded{
			UserId: c.userID, Amount: out.XP, Reason: c.reason, SourceEventId: c.eventID, TotalXp: out.TotalXP,
			AwardedAt: at, SourceId: c.sourceID,
		})
	}
	if out.Level > out.PreviousLevel {
		payloads = append(payloads, &progressv1.LevelUp{
			UserId: c.userID, Level: out.Level, TotalXp: out.TotalXP, ReachedAt: at, PreviousLevel: out.PreviousLevel,
		})
	}
	st := out.Streak
	if st.Lost {
		payloads = append(payloads, &progressv1.StreakLost{
			UserId: c.userID, PreviousStreakDays: st.Previous, LocalDate: st.MissedDate, LostAt: at,
		})
	}
	if st.Frozen {
		payloads = append(payloads, &progressv1.StreakFrozen{
			UserId: c.userID, StreakDays: st.Kept, LocalDate: st.MissedDate, FreezesLeft: st.FreezesLeft, FrozenAt: at,
		})
	}
	if st.Extended {
		payloads = append(payloads, &progressv1.StreakExtended{
			UserId: c.userID, StreakDays: out.StreakNow.Current, LocalDate: out.Day.Date, ExtendedAt: at,
		})
	}
	if out.GoalReached {
		payloads = append(payloads, &progressv1.DailyGoalReached{
			UserId: c.userID, GoalXp: l.DailyGoalXP, TodayXp: out.Day.XP, LocalDate: out.Day.Date, ReachedAt: at,
		})
	}
	for _, a := range out.Unlocked {
		payloads = append(payloads, &progressv1.AchievementUnlocked{
			UserId: c.userID, AchievementId: a.ID, Title: a.Title, Description: a.Description, UnlockedAt: at,
		})
	}
	msgs := make([]kafka.Message, 0, len(payloads))
	for _, p := range payloads {
		msg, err := kafka.NewEvent(kafka.EventSpec{
			Topic: kafka.TopicProgressEvents, Key: c.userID, Source: Name, Subject: c.userID, Payload: p, Time: c.at,
		})
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

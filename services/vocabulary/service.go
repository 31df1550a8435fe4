// Package vocabulary is the vocabulary service: each learner's deck of words,
// scheduled for review with FSRS-6 (go-fsrs/v4), fed by completed lessons and by
// hand. It owns the vocabulary-events topic.
package vocabulary

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/page"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: its consumer group is "vocabulary-service-group",
// its SQLite file vocabulary.db, its PostgreSQL schema "vocabulary".
const Name = "vocabulary"

//go:embed migrations/*.sql
var migrations embed.FS

// Spec describes the service to the host (platform/service): gRPC :50057, admin
// :8006, consuming lesson-events and user-events.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50057, AdminPort: 8006, Migrations: migrations, Topics: Topics,
		Register: func(d service.Deps) error {
			s, err := New(d.DB, cfg)
			if err != nil {
				return err
			}
			if d.Log != nil {
				s.log = d.Log
			}
			vocabularyv1.RegisterVocabularyServiceServer(d.GRPC, s)
			s.registerHandlers(d)
			return nil
		},
	}
}

// Config holds the study limits and the scheduler's settings. Zero fields take
// the defaults of [DefaultConfig].
type Config struct {
	DailyNewLimit    int             // new cards a learner may start a day (default 50)
	DailyReviewLimit int             // reviews of studied cards a day (default 200)
	DesiredRetention float64         // FSRS target recall probability (default 0.9)
	LearningSteps    []time.Duration // whole minutes under a day (default 1m, 10m)
	RelearningSteps  []time.Duration // whole minutes under a day (default 10m)
	MaximumInterval  int             // days (default 36500)
	Now              func() time.Time
}

// DefaultConfig is the configuration a zero Config stands for.
func DefaultConfig() Config {
	return Config{
		DailyNewLimit: 50, DailyReviewLimit: 200, DesiredRetention: 0.9,
		LearningSteps: []time.Duration{time.Minute, 10 * time.Minute}, RelearningSteps: []time.Duration{10 * time.Minute},
		MaximumInterval: 36500, Now: time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DailyNewLimit <= 0 {
		c.DailyNewLimit = d.DailyNewLimit
	}
	if c.DailyReviewLimit <= 0 {
		c.DailyReviewLimit = d.DailyReviewLimit
	}
	if c.DesiredRetention == 0 {
		c.DesiredRetention = d.DesiredRetention
	}
	if c.LearningSteps == nil {
		c.LearningSteps = d.LearningSteps
	}
	if c.RelearningSteps == nil {
		c.RelearningSteps = d.RelearningSteps
	}
	if c.MaximumInterval == 0 {
		c.MaximumInterval = d.MaximumInterval
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Scheduler returns the scheduler the configuration describes.
func (c Config) Scheduler() (*Scheduler, error) {
	c = c.withDefaults()
	return NewScheduler(SchedulerConfig{
		DesiredRetention: c.DesiredRetention, LearningSteps: c.LearningSteps, RelearningSteps: c.RelearningSteps,
		MaximumInterval: c.MaximumInterval,
	})
}

// Service implements vocabularyv1.VocabularyServiceServer. Proto types stop
// here: handlers translate to the domain and back. Safe for concurrent use.
type Service struct {
	vocabularyv1.UnimplementedVocabularyServiceServer
	db     *db.DB
	store  Store
	sched  *Scheduler
	limits DailyLimits
	now    func() time.Time
	log    *slog.Logger
}

// New returns the service over an opened, migrated database; an invalid
// scheduler configuration is an error.
func New(d *db.DB, cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	sched, err := cfg.Scheduler()
	if err != nil {
		return nil, err
	}
	clock := cfg.Now
	return &Service{
		db: d, sched: sched, limits: DailyLimits{New: cfg.DailyNewLimit, Reviews: cfg.DailyReviewLimit},
		now: func() time.Time { return clock().UTC().Truncate(time.Millisecond) }, log: slog.Default(),
	}, nil
}

// ListDeck returns a page of the caller's cards, newest first.
func (s *Service) ListDeck(ctx context.Context, req *vocabularyv1.ListDeckRequest) (*vocabularyv1.ListDeckResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	state := State(req.GetState())
	if state != 0 && (state < StateNew || state > StateRelearning) {
		return nil, apperr.Invalid("state", "STATE_INVALID", fmt.Sprintf("unknown card state %d", int32(req.GetState())))
	}
	size := page.Size(req.GetPageSize())
	cur, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var after int64
	if cur.ID != "" {
		if after, err = parseCursorKey(cur.Key); err != nil {
			return nil, err
		}
	}
	cards, err := s.store.ListCards(ctx, s.db, uid, state, after, cur.ID, size)
	if err != nil {
		return nil, err
	}
	total, err := s.store.CountCards(ctx, s.db, uid, state)
	if err != nil {
		return nil, err
	}
	out := &vocabularyv1.ListDeckResponse{TotalCount: int32(total)}
	for _, c := range cards {
		out.Cards = append(out.Cards, cardToProto(c))
	}
	out.NextPageToken = page.Next(cards, size, func(c Card) page.Cursor { return page.Cursor{Key: cursorKey(c), ID: c.ID} })
	return out, nil
}

// AddWord adds a word to the caller's deck by hand and publishes WordAdded.
func (s *Service) AddWord(ctx context.Context, req *vocabularyv1.AddWordRequest) (*vocabularyv1.AddWordResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, "vocabulary.AddWord", uid, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *vocabularyv1.AddWordResponse { return &vocabularyv1.AddWordResponse{} },
		func(ctx context.Context, tx *db.Tx) (*vocabularyv1.AddWordResponse, error) {
			c, err := NewCard(uuid.Must(uuid.NewV7()).String(), uid, Word{
				Term: req.GetTerm(), Translation: req.GetTranslation(), PartOfSpeech: req.GetPartOfSpeech(),
				Example: req.GetExample(), ExampleTranslation: req.GetExampleTranslation(),
			}, SourceManual, "", s.now())
			if err != nil {
				return nil, err
			}
			if err := s.store.InsertCard(ctx, tx, c); err != nil {
				return nil, err
			}
			msg, err := wordAddedEvent(c)
			if err != nil {
				return nil, err
			}
			if err := outbox.Write(ctx, tx, msg); err != nil {
				return nil, err
			}
			return &vocabularyv1.AddWordResponse{Card: cardToProto(c)}, nil
		})
}

// GetDueQueue returns the due reviews (earliest first) and then new cards, within
// what is left of today's limits.
func (s *Service) GetDueQueue(ctx context.Context, req *vocabularyv1.GetDueQueueRequest) (*vocabularyv1.GetDueQueueResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	limit := page.Size(req.GetLimit())
	now := s.now()
	day := UTCDay(now)
	counts, err := s.store.CountDeck(ctx, s.db, uid, now, day.AddDate(0, 0, 1))
	if err != nil {
		return nil, err
	}
	newToday, reviewsToday, _, err := s.store.CountReviews(ctx, s.db, uid, day, day.AddDate(0, 0, 1))
	if err != nil {
		return nil, err
	}
	newLeft, reviewsLeft := s.limits.Left(DailyCounts{New: newToday, Reviews: reviewsToday})
	nReviews, nNew := QueueShape(limit, counts.DueNow, counts.New, newLeft, reviewsLeft)
	due, err := s.store.DueReviews(ctx, s.db, uid, now, nReviews)
	if err != nil {
		return nil, err
	}
	fresh, err := s.store.NewCards(ctx, s.db, uid, nNew)
	if err != nil {
		return nil, err
	}
	out := &vocabularyv1.GetDueQueueResponse{
		DueCount: int32(counts.DueNow), NewCount: int32(counts.New),
		NewLeftToday: int32(newLeft), ReviewsLeftToday: int32(reviewsLeft),
	}
	for _, c := range append(due, fresh...) {
		out.Cards = append(out.Cards, cardToProto(c))
	}
	return out, nil
}

// ReviewWord records a review of one of the caller's cards, reschedules it and
// publishes WordReviewed (and WordMastered the first time the card is scheduled
// MasteredDays or more ahead).
func (s *Service) ReviewWord(ctx context.Context, req *vocabularyv1.ReviewWordRequest) (*vocabularyv1.ReviewWordResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	rating := Rating(req.GetRating())
	if err := CheckRating(rating); err != nil {
		return nil, err
	}
	now := s.now()
	at := now
	if req.GetReviewedAt() != nil {
		if err := req.GetReviewedAt().CheckValid(); err != nil {
			return nil, apperr.Invalid("reviewed_at", "REVIEWED_AT_INVALID", "reviewed_at is not a valid time")
		}
		at = req.GetReviewedAt().AsTime().UTC().Truncate(time.Millisecond)
		switch {
		case at.After(now.Add(clockSkew)):
			return nil, apperr.Invalid("reviewed_at", "REVIEWED_AT_IN_FUTURE", "reviewed_at must not be in the future")
		case at.After(now):
			at = now // within the tolerated clock skew
		}
	}
	for attempt := 0; ; attempt++ {
		resp, err := idempotency.Do(ctx, s.db, "vocabulary.ReviewWord", uid, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
			func() *vocabularyv1.ReviewWordResponse { return &vocabularyv1.ReviewWordResponse{} },
			func(ctx context.Context, tx *db.Tx) (*vocabularyv1.ReviewWordResponse, error) {
				return s.review(ctx, tx, uid, req.GetCardId(), rating, at, now)
			})
		if errors.Is(err, errConcurrentReview) && attempt < 5 {
			continue
		}
		return resp, err
	}
}

// clockSkew is how far in the future a client's reviewed_at may be (its clock
// running ahead); such a time counts as now.
const clockSkew = 60 * time.Second

func (s *Service) review(ctx context.Context, tx *db.Tx, uid, cardID string, r Rating, at, now time.Time) (*vocabularyv1.ReviewWordResponse, error) {
	c, err := s.store.CardOf(ctx, tx, uid, cardID)
	if err != nil {
		return nil, err
	}
	l, err := s.sched.Review(c.Memory, r, at)
	if err != nil {
		return nil, err
	}
	prevReps := c.Memory.Reps
	c.Memory = l.After
	newlyMastered := c.MasteredAt == nil && l.ReachesMastery()
	if newlyMastered {
		c.MasteredAt = &at
	}
	if err := s.store.UpdateMemory(ctx, tx, c, prevReps); err != nil {
		return nil, err
	}
	reviewID := uuid.Must(uuid.NewV7()).String()
	if err := s.store.InsertReview(ctx, tx, reviewID, uid, c.ID, l, now); err != nil {
		return nil, err
	}
	msg, err := wordReviewedEvent(c, reviewID, l)
	if err != nil {
		return nil, err
	}
	if err := outbox.Write(ctx, tx, msg); err != nil {
		return nil, err
	}
	if newlyMastered {
		if msg, err = wordMasteredEvent(c, at); err != nil {
			return nil, err
		}
		if err := outbox.Write(ctx, tx, msg); err != nil {
			return nil, err
		}
	}
	return &vocabularyv1.ReviewWordResponse{Result: &vocabularyv1.ReviewResult{
		Card: cardToProto(c), Rating: vocabularyv1.Rating(r), StateBefore: vocabularyv1.CardState(l.Before.State),
		ScheduledDays: int32(l.After.ScheduledDays), ElapsedDays: int32(l.ElapsedDays), NewlyMastered: newlyMastered,
	}}, nil
}

// GetStats counts the caller's deck and today's study.
func (s *Service) GetStats(ctx context.Context, _ *vocabularyv1.GetStatsRequest) (*vocabularyv1.GetStatsResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	day := UTCDay(now)
	c, err := s.store.CountDeck(ctx, s.db, uid, now, day.AddDate(0, 0, 1))
	if err != nil {
		return nil, err
	}
	newToday, reviewsToday, _, err := s.store.CountReviews(ctx, s.db, uid, day, day.AddDate(0, 0, 1))
	if err != nil {
		return nil, err
	}
	n30, o30, again30, err := s.store.CountReviews(ctx, s.db, uid, now.AddDate(0, 0, -30), now.Add(time.Millisecond))
	if err != nil {
		return nil, err
	}
	var retention float64
	if all := n30 + o30; all > 0 {
		retention = float64(all-again30) / float64(all)
	}
	return &vocabularyv1.GetStatsResponse{Stats: &vocabularyv1.DeckStats{
		TotalCards: int32(c.Total), NewCards: int32(c.New), LearningCards: int32(c.Learning), ReviewCards: int32(c.Review),
		RelearningCards: int32(c.Relearning), MasteredCards: int32(c.Mastered), DueNow: int32(c.DueNow), DueToday: int32(c.DueToday),
		ReviewsToday: int32(reviewsToday), NewToday: int32(newToday),
		DailyNewLimit: int32(s.limits.New), DailyReviewLimit: int32(s.limits.Reviews), Retention_30D: retention,
	}}, nil
}

func cardToProto(c Card) *vocabularyv1.Card {
	m := c.Memory
	p := &vocabularyv1.Card{
		Id: c.ID, Term: c.Term, Translation: c.Translation, PartOfSpeech: c.PartOfSpeech, Example: c.Example,
		ExampleTranslation: c.ExampleTranslation, AudioMediaId: c.AudioMediaID, Source: sourceToProto(c.Source),
		SourceLessonId: c.LessonID, State: vocabularyv1.CardState(m.State), Due: timestamppb.New(m.Due),
		Stability: m.Stability, Difficulty: m.Difficulty, Reps: int32(m.Reps), Lapses: int32(m.Lapses),
		ScheduledDays: int32(m.ScheduledDays), Step: int32(m.Step), Mastered: c.MasteredAt != nil,
		CreatedAt: timestamppb.New(c.CreatedAt),
	}
	if !m.LastReview.IsZero() {
		p.LastReview = timestamppb.New(m.LastReview)
	}
	return p
}

func sourceToProto(s Source) vocabularyv1.CardSource {
	switch s {
	case SourceLesson:
		return vocabularyv1.CardSource_CARD_SOURCE_LESSON
	case SourceManual:
		return vocabularyv1.CardSource_CARD_SOURCE_MANUAL
	}
	return vocabularyv1.CardSource_CARD_SOURCE_UNSPECIFIED
}

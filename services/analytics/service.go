// Package analytics is the analytics service: projections of every topic
// (active learners, events per type per day, the lesson funnel, quiz pass
// rate, accuracy, D1/D7 retention, a per-learner summary), client-side event
// ingestion onto analytics-events, and rebuilds of the projections by
// replaying the Kafka log into a fresh generation that is swapped in once
// caught up (see rebuild.go).
package analytics

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: consumer group "analytics-service-group",
// SQLite file analytics.db, PostgreSQL schema "analytics".
const Name = "analytics"

//go:embed migrations/*.sql
var migrations embed.FS

// Spec describes the service to the host: gRPC :50058, admin :8008, consuming
// every topic. It dials nothing.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50058, AdminPort: 8008, Migrations: migrations, Topics: Topics,
		Register: func(d service.Deps) error {
			s := New(d.DB, cfg)
			if d.Log != nil {
				s.log = d.Log
			}
			analyticsv1.RegisterAnalyticsServiceServer(d.GRPC, s)
			s.Subscribe(d.Router, d.Group)
			return nil
		},
	}
}

// Config configures the service. A zero field takes its default.
type Config struct {
	// Kafka is the client configuration rebuilds use for their own consumer
	// group and admin calls (the host's kafka.Config). Without Brokers,
	// Rebuild fails.
	Kafka kafka.Config
	// MaxBatchBytes caps the encoded size of an IngestEvents batch (default
	// DefaultMaxBatchBytes).
	MaxBatchBytes int
	// RebuildPoll is how often a rebuild checks its lag and records progress
	// (default 500ms).
	RebuildPoll time.Duration
	// RebuildStaleAfter: a running rebuild that recorded no progress for this
	// long is taken as dead, and a new one may start (default 1m).
	RebuildStaleAfter time.Duration
	// RetireDelay is how long the old generation's rows stay after a swap, for
	// reads that began on it (default 10s).
	RetireDelay time.Duration
	Now         func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.RebuildPoll <= 0 {
		c.RebuildPoll = 500 * time.Millisecond
	}
	if c.RebuildStaleAfter <= 0 {
		c.RebuildStaleAfter = time.Minute
	}
	if c.RetireDelay <= 0 {
		c.RetireDelay = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Service implements analyticsv1.AnalyticsServiceServer and the event
// handlers. Safe for concurrent use.
type Service struct {
	analyticsv1.UnimplementedAnalyticsServiceServer
	db    *db.DB
	store Store
	cfg   Config
	log   *slog.Logger

	ctx        context.Context // lives as long as the process: rebuilds run in it
	wg         sync.WaitGroup
	beforeSwap func(Rebuild) // test hook
}

// New returns the service over an opened, migrated database.
func New(d *db.DB, cfg Config) *Service {
	return &Service{db: d, cfg: cfg.withDefaults(), log: slog.Default(), ctx: context.Background()}
}

// IngestEvents publishes one ClientEventReceived per event of the batch.
func (s *Service) IngestEvents(ctx context.Context, req *analyticsv1.IngestEventsRequest) (*analyticsv1.IngestEventsResponse, error) {
	userID, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetEvents()) == 0 {
		return nil, apperr.Invalid("events", "EVENTS_EMPTY", "a batch holds 1 to 100 events")
	}
	now := s.cfg.Now()
	checks := make([]ClientEventCheck, len(req.GetEvents()))
	size := 0
	for i, e := range req.GetEvents() {
		if e.GetOccurredAt() == nil {
			return nil, apperr.Invalid(fmt.Sprintf("events[%d].occurred_at", i), "OCCURRED_AT_MISSING", "is required")
		}
		checks[i] = ClientEventCheck{OccurredAt: e.GetOccurredAt().AsTime()}
		size += proto.Size(e)
	}
	if err := CheckBatch(checks, size, s.cfg.MaxBatchBytes, now); err != nil {
		return nil, err
	}
	key := idempotency.RequestKey(ctx, req.GetIdempotencyKey())
	return idempotency.Do(ctx, s.db, "analytics.IngestEvents", userID, key,
		func() *analyticsv1.IngestEventsResponse { return &analyticsv1.IngestEventsResponse{} },
		func(ctx context.Context, tx *db.Tx) (*analyticsv1.IngestEventsResponse, error) {
			msgs := make([]kafka.Message, 0, len(req.GetEvents()))
			for _, e := range req.GetEvents() {
				msg, err := kafka.NewEvent(kafka.EventSpec{
					Topic: kafka.TopicAnalyticsEvents, Key: userID, Source: Name, Subject: userID, Time: now,
					Payload: &analyticsv1.ClientEventReceived{
						UserId: userID, Name: e.GetName(), OccurredAt: e.GetOccurredAt(), Properties: e.GetProperties(),
						SessionId: e.GetSessionId(), ReceivedAt: timestamppb.New(now),
					},
				})
				if err != nil {
					return nil, err
				}
				msgs = append(msgs, msg)
			}
			if err := outbox.Write(ctx, tx, msgs...); err != nil {
				return nil, err
			}
			return &analyticsv1.IngestEventsResponse{Accepted: int32(len(msgs))}, nil
		})
}

// GetOverview returns the numbers of a span of days, from the current
// generation. Admins only.
func (s *Service) GetOverview(ctx context.Context, req *analyticsv1.GetOverviewRequest) (*analyticsv1.GetOverviewResponse, error) {
	if _, err := auth.Require(ctx, auth.RoleAdmin); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	from, to, err := Span(req.GetFrom(), req.GetTo(), now)
	if err != nil {
		return nil, err
	}
	st, err := s.store.State(ctx, s.db)
	if err != nil {
		return nil, err
	}
	g := st.Current
	act, err := s.store.Activity(ctx, s.db, g, AddDays(from, -29), AddDays(to, 7))
	if err != nil {
		return nil, err
	}
	counts, err := s.store.EventCounts(ctx, s.db, g, from, to)
	if err != nil {
		return nil, err
	}
	tot, err := s.store.Totals(ctx, s.db, g, from, to)
	if err != nil {
		return nil, err
	}
	fun, err := s.store.Funnel(ctx, s.db, g, from, to)
	if err != nil {
		return nil, err
	}
	reg, err := s.store.Cohorts(ctx, s.db, g, from, to)
	if err != nil {
		return nil, err
	}
	asOf, err := s.store.AsOf(ctx, s.db, g)
	if err != nil {
		return nil, err
	}
	days := DaysBetween(from, to)
	ov := &analyticsv1.Overview{
		From: from, To: to, ActiveUsers: activeUsers(act.ActiveOn(to)),
		LessonFunnel:    &analyticsv1.LessonFunnel{Started: fun.Started, Completed: fun.Completed, CompletionRate: fun.Rate()},
		Quizzes:         &analyticsv1.QuizMetrics{Submitted: tot.QuizzesSubmitted, Passed: tot.QuizzesPassed, PassRate: Ratio(tot.QuizzesPassed, tot.QuizzesSubmitted)},
		AverageAccuracy: Ratio(tot.AnswersCorrect, tot.AnswersGraded),
	}
	if !asOf.IsZero() {
		ov.AsOf = timestamppb.New(asOf)
	}
	for _, d := range days {
		byType := counts[d]
		if byType == nil {
			byType = map[string]int64{}
		}
		ov.Daily = append(ov.Daily, &analyticsv1.DailyMetrics{Date: d, ActiveUsers: activeUsers(act.ActiveOn(d)), EventsByType: byType})
	}
	for _, c := range Retention(days, reg, act, Day(now)) {
		ov.Retention = append(ov.Retention, &analyticsv1.RetentionCohort{
			CohortDate: c.Date, Size: c.Size, Day1Retained: c.Day1, Day7Retained: c.Day7, Day1Rate: c.Day1Rate, Day7Rate: c.Day7Rate,
		})
	}
	return &analyticsv1.GetOverviewResponse{Overview: ov}, nil
}

func activeUsers(c ActiveCounts) *analyticsv1.ActiveUsers {
	return &analyticsv1.ActiveUsers{Daily: c.Daily, Weekly: c.Weekly, Monthly: c.Monthly}
}

// GetMySummary returns the caller's own totals.
func (s *Service) GetMySummary(ctx context.Context, _ *analyticsv1.GetMySummaryRequest) (*analyticsv1.GetMySummaryResponse, error) {
	userID, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.store.State(ctx, s.db)
	if err != nil {
		return nil, err
	}
	sum, err := s.store.Summary(ctx, s.db, st.Current, userID)
	if err != nil {
		return nil, err
	}
	out := &analyticsv1.LearnerSummary{
		LessonsStarted: sum.LessonsStarted, LessonsCompleted: sum.LessonsCompleted,
		ExercisesAnswered: sum.ExercisesAnswered, ExercisesCorrect: sum.ExercisesCorrect, Accuracy: sum.Accuracy(),
		QuizzesSubmitted: sum.QuizzesSubmitted, QuizzesPassed: sum.QuizzesPassed, Reviews: sum.Reviews, ActiveDays: sum.ActiveDays,
	}
	if sum.FirstActiveAt > 0 {
		out.FirstActiveAt = timestamppb.New(time.UnixMilli(sum.FirstActiveAt))
		out.LastActiveAt = timestamppb.New(time.UnixMilli(sum.LastActiveAt))
	}
	return &analyticsv1.GetMySummaryResponse{Summary: out}, nil
}

// Rebuild starts a rebuild (see rebuild.go). Admins only.
func (s *Service) Rebuild(ctx context.Context, req *analyticsv1.RebuildRequest) (*analyticsv1.RebuildResponse, error) {
	c, err := auth.Require(ctx, auth.RoleAdmin)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	var since *time.Time
	if req.GetSince() != nil {
		t := req.GetSince().AsTime()
		if t.After(now.Add(time.Minute)) {
			return nil, apperr.Invalid("since", "SINCE_IN_FUTURE", "must not be in the future")
		}
		since = &t
	}
	if s.cfg.Kafka.Brokers == "" {
		return nil, apperr.New(apperr.KindFailedPrecondition, "KAFKA_NOT_CONFIGURED", "the analytics service has no Kafka configuration to replay from")
	}
	var started *Rebuild
	key := idempotency.RequestKey(ctx, req.GetIdempotencyKey())
	resp, err := idempotency.Do(ctx, s.db, "analytics.Rebuild", c.UserID, key,
		func() *analyticsv1.RebuildResponse { return &analyticsv1.RebuildResponse{} },
		func(ctx context.Context, tx *db.Tx) (*analyticsv1.RebuildResponse, error) {
			id := uuid.NewString()
			r := Rebuild{ID: id, Generation: "g-" + id, State: stateRunning, Since: since, StartedAt: now, HeartbeatAt: now}
			ok, err := s.store.StartRebuild(ctx, tx, r, c.UserID, now.Add(-s.cfg.RebuildStaleAfter))
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, apperr.Conflict("REBUILD_RUNNING", "a rebuild is already running; follow it with GetRebuildStatus")
			}
			started = &r
			return &analyticsv1.RebuildResponse{Rebuild: rebuildStatus(r)}, nil
		})
	if err != nil {
		return nil, err
	}
	if started != nil {
		s.startRunner(*started)
	}
	return resp, nil
}

// GetRebuildStatus returns a rebuild's progress. Admins only.
func (s *Service) GetRebuildStatus(ctx context.Context, req *analyticsv1.GetRebuildStatusRequest) (*analyticsv1.GetRebuildStatusResponse, error) {
	if _, err := auth.Require(ctx, auth.RoleAdmin); err != nil {
		return nil, err
	}
	r, found, err := s.store.Rebuild(ctx, s.db, req.GetRebuildId())
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, apperr.NotFound("REBUILD_NOT_FOUND", "no rebuild with this id")
	}
	return &analyticsv1.GetRebuildStatusResponse{Rebuild: rebuildStatus(r)}, nil
}

func rebuildStatus(r Rebuild) *analyticsv1.RebuildStatus {
	out := &analyticsv1.RebuildStatus{
		Id: r.ID, State: analyticsv1.RebuildState(r.State), Consumed: r.Consumed, Lag: r.Lag,
		StartedAt: timestamppb.New(r.StartedAt), Error: r.Error,
	}
	if r.Since != nil {
		out.Since = timestamppb.New(*r.Since)
	}
	if !r.FinishedAt.IsZero() {
		out.FinishedAt = timestamppb.New(r.FinishedAt)
	}
	return out
}

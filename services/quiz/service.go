// Package quiz is the quiz service: timed quizzes attached to a unit (or to one
// lesson of it) whose questions are lesson exercises, graded by
// services/exercise. A quiz unlocks for a learner when they have completed the
// lessons it covers, which the service learns from lesson-events. It owns the
// quiz-events topic.
package quiz

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/page"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/services/exercise"
)

// Name is the service's name: its consumer group is "quiz-service-group", its
// SQLite file quiz.db, its PostgreSQL schema "quiz".
const Name = "quiz"

// Idempotency scopes of the calls that accept a key.
const (
	scopeCreate = "quiz.create"
	scopeStart  = "quiz.start"
	scopeSubmit = "quiz.submit"
)

// The service's migrations: migrations/sqlite and migrations/postgres hold the
// same schema, but for the byte column type (BLOB, BYTEA).
//
//go:embed migrations
var migrations embed.FS

// Spec describes the service to the host (platform/service): gRPC :50056, admin
// :8007, consuming lesson-events (LessonCompleted) and user-events (UserDeleted).
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50056, AdminPort: 8007, Migrations: migrations, Topics: Topics,
		Register: func(d service.Deps) error {
			s := New(d.DB, cfg)
			quizv1.RegisterQuizServiceServer(d.GRPC, s)
			s.registerHandlers(d.Router, d.Group)
			return nil
		},
	}
}

// Config configures the service; the zero value is the production setting.
type Config struct {
	// Now is the clock (deadlines, timestamps); nil means the system clock.
	// Tests inject one to move past deadlines.
	Now func() time.Time
}

// Service implements quizv1.QuizServiceServer. Proto types stop here, but for
// the exercises themselves (lessonv1.Exercise is the question content). Safe
// for concurrent use.
type Service struct {
	quizv1.UnimplementedQuizServiceServer
	db    *db.DB
	store Store
	now   func() time.Time
}

// New returns the service over an opened, migrated database.
func New(d *db.DB, cfg Config) *Service {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Service{db: d, now: func() time.Time { return now().UTC().Truncate(time.Millisecond) }}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// CreateQuiz creates a quiz. Teachers and admins only.
func (s *Service) CreateQuiz(ctx context.Context, req *quizv1.CreateQuizRequest) (*quizv1.CreateQuizResponse, error) {
	c, err := auth.Require(ctx, auth.RoleTeacher, auth.RoleAdmin)
	if err != nil {
		return nil, err
	}
	d := Draft{
		CourseID: req.GetCourseId(), UnitID: req.GetUnitId(), LessonID: req.GetLessonId(), Title: req.GetTitle(),
		Description: req.GetDescription(), TimeLimitSeconds: req.GetTimeLimitSeconds(), MaxAttempts: req.GetMaxAttempts(),
		PassingScorePercent: req.GetPassingScorePercent(), CoveredLessonIDs: req.GetCoveredLessonIds(),
		Questions: cloneExercises(req.GetQuestions()),
	}
	return idempotency.Do(ctx, s.db, scopeCreate, c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *quizv1.CreateQuizResponse { return &quizv1.CreateQuizResponse{} },
		func(ctx context.Context, tx *db.Tx) (*quizv1.CreateQuizResponse, error) {
			q, err := NewQuiz(newID(), d, s.now())
			if err != nil {
				return nil, err
			}
			for _, ex := range q.Questions {
				ex.Id = newID()
			}
			if err := s.store.InsertQuiz(ctx, tx, q); err != nil {
				return nil, err
			}
			return &quizv1.CreateQuizResponse{Quiz: quizToProto(q)}, nil
		})
}

// ImportQuiz creates the quiz with the request's key, or replaces it (its id,
// its questions' ids position by position and the learners' attempts stay).
// Admins only. A concurrent import of a new key is retried once, as a replace.
func (s *Service) ImportQuiz(ctx context.Context, req *quizv1.ImportQuizRequest) (*quizv1.ImportQuizResponse, error) {
	if _, err := auth.Require(ctx, auth.RoleAdmin); err != nil {
		return nil, err
	}
	var out *quizv1.ImportQuizResponse
	for attempt := 0; ; attempt++ {
		d := Draft{
			Key: req.GetKey(), CourseID: req.GetCourseId(), UnitID: req.GetUnitId(), LessonID: req.GetLessonId(),
			Title: req.GetTitle(), Description: req.GetDescription(), TimeLimitSeconds: req.GetTimeLimitSeconds(),
			MaxAttempts: req.GetMaxAttempts(), PassingScorePercent: req.GetPassingScorePercent(),
			CoveredLessonIDs: req.GetCoveredLessonIds(), Questions: cloneExercises(req.GetQuestions()),
		}
		err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			now := s.now()
			id, err := s.store.QuizIDByKey(ctx, tx, d.Key)
			if err != nil {
				return err
			}
			created := id == ""
			if created {
				id = newID()
			}
			q, err := NewQuiz(id, d, now)
			if err != nil {
				return err
			}
			for _, ex := range q.Questions {
				ex.Id = newID() // kept for new positions; ReplaceQuiz restores existing ones
			}
			if created {
				err = s.store.InsertQuiz(ctx, tx, q)
			} else {
				var old Quiz
				if old, err = s.store.QuizByID(ctx, tx, id); err != nil {
					return err
				}
				q.CreatedAt = old.CreatedAt
				err = s.store.ReplaceQuiz(ctx, tx, q)
			}
			if err != nil {
				return err
			}
			out = &quizv1.ImportQuizResponse{Quiz: quizToProto(q), Created: created}
			return nil
		})
		if apperr.KindOf(err) == apperr.KindConflict && attempt == 0 {
			continue // a concurrent import created the key first: replace it
		}
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// ListQuizzes lists quizzes in course order with the caller's state at each.
func (s *Service) ListQuizzes(ctx context.Context, req *quizv1.ListQuizzesRequest) (*quizv1.ListQuizzesResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	after, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	quizzes, err := s.store.ListQuizzes(ctx, s.db, ListFilter{CourseID: req.GetCourseId(), UnitID: req.GetUnitId(), LessonID: req.GetLessonId()}, after, size)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(quizzes))
	for i, q := range quizzes {
		ids[i] = q.ID
	}
	covered, err := s.store.CoveredLessons(ctx, s.db, ids)
	if err != nil {
		return nil, err
	}
	var lessons []string
	seen := map[string]bool{}
	for _, ls := range covered {
		for _, l := range ls {
			if !seen[l] {
				seen[l] = true
				lessons = append(lessons, l)
			}
		}
	}
	completed, err := s.store.CompletedAmong(ctx, s.db, c.UserID, lessons)
	if err != nil {
		return nil, err
	}
	stats, err := s.store.AttemptStats(ctx, s.db, c.UserID, ids, s.now())
	if err != nil {
		return nil, err
	}
	out := &quizv1.ListQuizzesResponse{Quizzes: make([]*quizv1.QuizSummary, 0, len(quizzes))}
	for _, q := range quizzes {
		cov := covered[q.ID]
		if cov == nil {
			cov = []string{}
		}
		st := stats[q.ID]
		out.Quizzes = append(out.Quizzes, &quizv1.QuizSummary{
			Id: q.ID, CourseId: q.CourseID, UnitId: q.UnitID, LessonId: q.LessonID, Title: q.Title,
			Description: q.Description, QuestionCount: q.QuestionCount, TimeLimitSeconds: q.TimeLimitSeconds,
			MaxAttempts: q.MaxAttempts, PassingScorePercent: q.PassingScorePercent, CoveredLessonIds: cov,
			Status: statusToProto(StatusOf(st.Passed, Unlocked(cov, completed))), AttemptsUsed: st.Used,
			BestScorePercent: st.BestScore, OpenAttemptId: st.OpenAttemptID,
		})
	}
	out.NextPageToken = page.Next(quizzes, size, func(q Quiz) page.Cursor { return page.Cursor{Key: q.SortKey(), ID: q.ID} })
	return out, nil
}

// StartQuiz starts an attempt, or returns the caller's open one. QuizStarted is
// published for a new attempt only.
func (s *Service) StartQuiz(ctx context.Context, req *quizv1.StartQuizRequest) (*quizv1.StartQuizResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, scopeStart, c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *quizv1.StartQuizResponse { return &quizv1.StartQuizResponse{} },
		func(ctx context.Context, tx *db.Tx) (*quizv1.StartQuizResponse, error) {
			q, err := s.store.QuizByID(ctx, tx, req.GetQuizId())
			if err != nil {
				return nil, err
			}
			attempts, err := s.store.Attempts(ctx, tx, c.UserID, q.ID)
			if err != nil {
				return nil, err
			}
			now := s.now()
			for _, a := range attempts {
				if a.Open(now) {
					return &quizv1.StartQuizResponse{Attempt: attemptToProto(q, a, nil)}, nil
				}
			}
			completed, err := s.store.CompletedAmong(ctx, tx, c.UserID, q.CoveredLessonIDs)
			if err != nil {
				return nil, err
			}
			if err := CheckStart(q, Unlocked(q.CoveredLessonIDs, completed), int32(len(attempts))); err != nil {
				return nil, err
			}
			a := Attempt{
				ID: newID(), UserID: c.UserID, QuizID: q.ID, Number: int32(len(attempts)) + 1,
				StartedAt: now, Deadline: Deadline(now, q.TimeLimitSeconds),
			}
			// A concurrent start that took the same number fails here on the
			// unique (user, quiz, number); idempotency.Do retries it once, and
			// the retry returns the winner's open attempt.
			if err := s.store.InsertAttempt(ctx, tx, a); err != nil {
				return nil, err
			}
			ev, err := startedEvent(a)
			if err != nil {
				return nil, err
			}
			if err := outbox.Write(ctx, tx, ev); err != nil {
				return nil, err
			}
			return &quizv1.StartQuizResponse{Attempt: attemptToProto(q, a, nil)}, nil
		})
}

// GetQuizAttempt returns one of the caller's attempts; another learner's
// attempt is not found.
func (s *Service) GetQuizAttempt(ctx context.Context, req *quizv1.GetQuizAttemptRequest) (*quizv1.GetQuizAttemptResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.ownAttempt(ctx, s.db, c.UserID, req.GetAttemptId())
	if err != nil {
		return nil, err
	}
	q, err := s.store.QuizByID(ctx, s.db, a.QuizID)
	if err != nil {
		return nil, err
	}
	var result *quizv1.QuizResult
	if a.SubmittedAt != nil && len(a.Result) > 0 {
		result = &quizv1.QuizResult{}
		if err := proto.Unmarshal(a.Result, result); err != nil {
			return nil, fmt.Errorf("decode result of attempt %s: %w", a.ID, err)
		}
		attempts, err := s.store.Attempts(ctx, s.db, c.UserID, q.ID)
		if err != nil {
			return nil, err
		}
		result.AttemptsLeft = max(q.MaxAttempts-int32(len(attempts)), 0) // as of now
	}
	return &quizv1.GetQuizAttemptResponse{Attempt: attemptToProto(q, a, result)}, nil
}

// ownAttempt returns the attempt if it is userID's; anyone else's is NotFound,
// so that attempt ids reveal nothing.
func (s *Service) ownAttempt(ctx context.Context, q db.Querier, userID, id string) (Attempt, error) {
	a, err := s.store.AttemptByID(ctx, q, id)
	if err != nil {
		return Attempt{}, err
	}
	if a.UserID != userID {
		return Attempt{}, errAttemptNotFound
	}
	return a, nil
}

// SubmitQuiz grades an attempt and publishes QuizSubmitted. A late or repeated
// submission is refused (QUIZ_EXPIRED, ALREADY_SUBMITTED); a retry carrying the
// idempotency key of the submission that succeeded returns its result instead.
func (s *Service) SubmitQuiz(ctx context.Context, req *quizv1.SubmitQuizRequest) (*quizv1.SubmitQuizResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	answers := make([]Answer, len(req.GetAnswers()))
	for i, a := range req.GetAnswers() {
		answers[i] = Answer{QuestionID: a.GetQuestionId(), Answer: a.GetAnswer()}
	}
	return idempotency.Do(ctx, s.db, scopeSubmit, c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *quizv1.SubmitQuizResponse { return &quizv1.SubmitQuizResponse{} },
		func(ctx context.Context, tx *db.Tx) (*quizv1.SubmitQuizResponse, error) {
			a, err := s.ownAttempt(ctx, tx, c.UserID, req.GetAttemptId())
			if err != nil {
				return nil, err
			}
			now := s.now()
			if err := a.CheckSubmit(now); err != nil {
				return nil, err
			}
			q, err := s.store.QuizByID(ctx, tx, a.QuizID)
			if err != nil {
				return nil, err
			}
			g, err := Grade(q, answers)
			if err != nil {
				return nil, err
			}
			attempts, err := s.store.Attempts(ctx, tx, c.UserID, q.ID)
			if err != nil {
				return nil, err
			}
			passedBefore := false
			for _, o := range attempts {
				passedBefore = passedBefore || (o.ID != a.ID && o.Passed)
			}
			a.SubmittedAt, a.ScorePercent, a.Passed = &now, g.ScorePercent, g.Passed
			result := resultToProto(q, a, g, max(q.MaxAttempts-int32(len(attempts)), 0))
			if a.Result, err = proto.Marshal(result); err != nil {
				return nil, fmt.Errorf("encode quiz result: %w", err)
			}
			fresh, err := s.store.MarkSubmitted(ctx, tx, a)
			if err != nil {
				return nil, err
			}
			if !fresh {
				return nil, apperr.New(apperr.KindFailedPrecondition, "ALREADY_SUBMITTED",
					"attempt "+a.ID+" was already submitted; start a new attempt to try again")
			}
			ev, err := submittedEvent(q, a, g, g.Passed && !passedBefore)
			if err != nil {
				return nil, err
			}
			if err := outbox.Write(ctx, tx, ev); err != nil {
				return nil, err
			}
			return &quizv1.SubmitQuizResponse{Result: result}, nil
		})
}

func cloneExercises(in []*lessonv1.Exercise) []*lessonv1.Exercise {
	out := make([]*lessonv1.Exercise, len(in))
	for i, ex := range in {
		if ex != nil {
			out[i] = proto.CloneOf(ex)
		}
	}
	return out
}

func quizToProto(q Quiz) *quizv1.Quiz {
	return &quizv1.Quiz{
		Id: q.ID, Key: q.Key, CourseId: q.CourseID, UnitId: q.UnitID, LessonId: q.LessonID, Title: q.Title,
		Description: q.Description, Questions: q.Questions, TimeLimitSeconds: q.TimeLimitSeconds,
		MaxAttempts: q.MaxAttempts, PassingScorePercent: q.PassingScorePercent, CoveredLessonIds: q.CoveredLessonIDs,
		CreatedAt: timestamppb.New(q.CreatedAt), UpdatedAt: timestamppb.New(q.UpdatedAt),
	}
}

// attemptToProto shows an attempt with the quiz's questions, without answers.
func attemptToProto(q Quiz, a Attempt, result *quizv1.QuizResult) *quizv1.QuizAttempt {
	views := make([]*lessonv1.ExerciseView, len(q.Questions))
	for i, ex := range q.Questions {
		views[i] = exercise.View(ex)
	}
	return &quizv1.QuizAttempt{
		Id: a.ID, QuizId: a.QuizID, AttemptNumber: a.Number, Questions: views,
		StartedAt: timestamppb.New(a.StartedAt), Deadline: timestamppb.New(a.Deadline), Result: result,
	}
}

func resultToProto(q Quiz, a Attempt, g Grading, attemptsLeft int32) *quizv1.QuizResult {
	fb := make([]*quizv1.QuestionFeedback, len(g.Feedback))
	for i, f := range g.Feedback {
		fb[i] = &quizv1.QuestionFeedback{
			QuestionId: f.QuestionID, Correct: f.Correct, ExpectedAnswer: f.Expected, Explanation: f.Explanation, Answered: f.Answered,
		}
	}
	return &quizv1.QuizResult{
		AttemptId: a.ID, QuizId: q.ID, ScorePercent: g.ScorePercent, Passed: g.Passed, CorrectCount: int32(g.Correct),
		QuestionCount: int32(len(g.Feedback)), Feedback: fb, SubmittedAt: timestamppb.New(*a.SubmittedAt),
		AttemptsLeft: attemptsLeft,
	}
}

func statusToProto(st Status) quizv1.QuizStatus {
	switch st {
	case StatusLocked:
		return quizv1.QuizStatus_QUIZ_STATUS_LOCKED
	case StatusUnlocked:
		return quizv1.QuizStatus_QUIZ_STATUS_UNLOCKED
	case StatusPassed:
		return quizv1.QuizStatus_QUIZ_STATUS_PASSED
	}
	return quizv1.QuizStatus_QUIZ_STATUS_UNSPECIFIED
}

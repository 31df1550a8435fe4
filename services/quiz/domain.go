package quiz

import (
	"fmt"
	"strings"
	"time"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/services/exercise"
)

// Defaults applied when a quiz is created or imported with 0 in a setting.
const (
	DefaultTimeLimitSeconds    = 300
	DefaultMaxAttempts         = 3
	DefaultPassingScorePercent = 70
)

// Status is where a learner stands with a quiz.
type Status int

const (
	StatusLocked   Status = iota + 1 // some covered lesson is not completed yet
	StatusUnlocked                   // it can be taken (while attempts are left)
	StatusPassed                     // the learner has passed it
)

// Quiz is the quiz aggregate: settings, the lessons that unlock it and its
// questions (lesson exercises, answers included), in order.
type Quiz struct {
	ID, Key                    string // Key is empty for a quiz created through the API
	CourseID, UnitID, LessonID string // LessonID is empty for a unit quiz
	Title, Description         string
	TimeLimitSeconds           int32
	MaxAttempts                int32
	PassingScorePercent        int32
	CoveredLessonIDs           []string // resolved: see [CoveredLessons]
	Questions                  []*lessonv1.Exercise
	CreatedAt, UpdatedAt       time.Time
	QuestionCount              int32 // set by list queries, which do not load Questions
}

// SortKey orders quizzes in course order: by course, unit, then the lesson a
// quiz is attached to, a unit quiz after the quizzes of its lessons ('~' sorts
// after every UUID character).
func (q Quiz) SortKey() string {
	lesson := q.LessonID
	if lesson == "" {
		lesson = "~"
	}
	return q.CourseID + "/" + q.UnitID + "/" + lesson
}

// Draft is the input of [NewQuiz]: a quiz as CreateQuiz or ImportQuiz gives
// it. Shape rules (UUIDs, lengths, ranges) are checked by protovalidate
// before it gets here; the rules below are the domain's own.
type Draft struct {
	Key, CourseID, UnitID, LessonID string
	Title, Description              string
	TimeLimitSeconds                int32
	MaxAttempts                     int32
	PassingScorePercent             int32
	CoveredLessonIDs                []string
	Questions                       []*lessonv1.Exercise
}

// NewQuiz applies the defaults and rules to d and returns the quiz to store,
// with id. Question ids are left as they are (the caller assigns them); their
// positions are set from the order, from 1, in place.
func NewQuiz(id string, d Draft, now time.Time) (Quiz, error) {
	q := Quiz{
		ID: id, Key: d.Key, CourseID: d.CourseID, UnitID: d.UnitID, LessonID: d.LessonID,
		Title: strings.TrimSpace(d.Title), Description: strings.TrimSpace(d.Description),
		TimeLimitSeconds:    orDefault(d.TimeLimitSeconds, DefaultTimeLimitSeconds),
		MaxAttempts:         orDefault(d.MaxAttempts, DefaultMaxAttempts),
		PassingScorePercent: orDefault(d.PassingScorePercent, DefaultPassingScorePercent),
		CoveredLessonIDs:    CoveredLessons(d.LessonID, d.CoveredLessonIDs),
		Questions:           d.Questions,
		CreatedAt:           now, UpdatedAt: now,
	}
	if q.Title == "" {
		return Quiz{}, apperr.Invalid("title", "TITLE_BLANK", "title must not be blank")
	}
	if q.CourseID == "" {
		return Quiz{}, apperr.Invalid("course_id", "COURSE_REQUIRED", "course_id is required")
	}
	if q.UnitID == "" {
		return Quiz{}, apperr.Invalid("unit_id", "UNIT_REQUIRED", "unit_id is required")
	}
	if len(q.Questions) == 0 {
		return Quiz{}, apperr.Invalid("questions", "QUESTIONS_REQUIRED", "a quiz needs at least one question")
	}
	for i, ex := range q.Questions {
		if ex == nil {
			return Quiz{}, apperr.Invalid(fmt.Sprintf("questions[%d]", i), "QUESTION_EMPTY", fmt.Sprintf("question %d is empty", i+1))
		}
		if err := exercise.Validate(ex); err != nil {
			return Quiz{}, questionError(i, err)
		}
		ex.Position = int32(i + 1)
	}
	return q, nil
}

// questionError points a validation error of question i at that question.
func questionError(i int, err error) error {
	field := fmt.Sprintf("questions[%d]", i)
	if e, ok := apperr.As(err); ok {
		out := *e
		if out.Field != "" {
			out.Field = field + "." + out.Field
		} else {
			out.Field = field
		}
		out.Message = fmt.Sprintf("question %d: %s", i+1, e.Message)
		return &out
	}
	return apperr.Invalid(field, "QUESTION_INVALID", fmt.Sprintf("question %d: %v", i+1, err))
}

func orDefault(v, def int32) int32 {
	if v <= 0 {
		return def
	}
	return v
}

// CoveredLessons resolves the lessons that unlock a quiz: the given list when
// it is not empty; otherwise the lesson the quiz is attached to, if any; a
// unit quiz with none is unlocked from the start (empty result).
func CoveredLessons(lessonID string, covered []string) []string {
	if len(covered) > 0 {
		return append([]string(nil), covered...)
	}
	if lessonID != "" {
		return []string{lessonID}
	}
	return []string{}
}

// Unlocked is the unlock rule: a quiz unlocks when every lesson it covers is
// completed. covered is already resolved by [CoveredLessons].
func Unlocked(covered []string, completed map[string]bool) bool {
	for _, id := range covered {
		if !completed[id] {
			return false
		}
	}
	return true
}

// StatusOf combines what a learner has done into their status for a quiz.
func StatusOf(passed, unlocked bool) Status {
	switch {
	case passed:
		return StatusPassed
	case unlocked:
		return StatusUnlocked
	}
	return StatusLocked
}

// CheckStart says why a learner may not start a new attempt, or nil. used is
// the number of attempts they have started.
func CheckStart(q Quiz, unlocked bool, used int32) error {
	if !unlocked {
		return apperr.New(apperr.KindFailedPrecondition, "QUIZ_LOCKED",
			fmt.Sprintf("quiz %q is locked: complete the lessons it covers first", q.Title))
	}
	if used >= q.MaxAttempts {
		return apperr.New(apperr.KindFailedPrecondition, "NO_ATTEMPTS_LEFT",
			fmt.Sprintf("no attempts left at quiz %q: all %d have been used", q.Title, q.MaxAttempts))
	}
	return nil
}

// Deadline is when an attempt started at start stops accepting submissions.
func Deadline(start time.Time, timeLimitSeconds int32) time.Time {
	return start.Add(time.Duration(timeLimitSeconds) * time.Second)
}

// Expired reports whether a submission at now comes too late: the deadline
// itself is still in time.
func Expired(now, deadline time.Time) bool { return now.After(deadline) }

// Attempt is one learner's go at a quiz.
type Attempt struct {
	ID, UserID, QuizID string
	Number             int32
	StartedAt          time.Time
	Deadline           time.Time
	SubmittedAt        *time.Time
	ScorePercent       int32
	Passed             bool
	Result             []byte // binary quizv1.QuizResult once submitted
}

// Open reports whether the attempt can still be submitted at now.
func (a Attempt) Open(now time.Time) bool { return a.SubmittedAt == nil && !Expired(now, a.Deadline) }

// CheckSubmit says why the attempt cannot be submitted at now, or nil.
func (a Attempt) CheckSubmit(now time.Time) error {
	if a.SubmittedAt != nil {
		return apperr.New(apperr.KindFailedPrecondition, "ALREADY_SUBMITTED",
			fmt.Sprintf("attempt %s was already submitted at %s; start a new attempt to try again",
				a.ID, a.SubmittedAt.UTC().Format(time.RFC3339)))
	}
	if Expired(now, a.Deadline) {
		return apperr.New(apperr.KindFailedPrecondition, "QUIZ_EXPIRED",
			fmt.Sprintf("the time limit of attempt %s ran out at %s (%s late); answers are no longer accepted, start a new attempt if any are left",
				a.ID, a.Deadline.UTC().Format(time.RFC3339), now.Sub(a.Deadline).Round(time.Second)))
	}
	return nil
}

// ScorePercent is correct answers over questions in percent, rounded down.
func ScorePercent(correct, total int) int32 {
	if total <= 0 {
		return 0
	}
	return int32(correct * 100 / total)
}

// Passed reports whether a score reaches the passing score.
func Passed(score, passing int32) bool { return score >= passing }

// Feedback is the grading of one question.
type Feedback struct {
	QuestionID  string
	Answered    bool
	Correct     bool
	Expected    string
	Explanation string
}

// Grading is the outcome of grading every question of an attempt.
type Grading struct {
	Feedback     []Feedback // one per question, in order
	Correct      int
	ScorePercent int32
	Passed       bool
}

// Perfect reports whether every question was answered correctly.
func (g Grading) Perfect() bool { return g.Correct == len(g.Feedback) && len(g.Feedback) > 0 }

// Answer is the learner's answer to one question.
type Answer struct {
	QuestionID string
	Answer     *lessonv1.Answer
}

// Grade grades every question of q with the lesson exercise rules
// (services/exercise); an unanswered question is wrong. An answer to a question
// that is not in the quiz, or to one question twice, is refused naming it.
func Grade(q Quiz, answers []Answer) (Grading, error) {
	byID := make(map[string]*lessonv1.Answer, len(answers))
	inQuiz := make(map[string]bool, len(q.Questions))
	for _, ex := range q.Questions {
		inQuiz[ex.GetId()] = true
	}
	for i, a := range answers {
		field := fmt.Sprintf("answers[%d].question_id", i)
		if !inQuiz[a.QuestionID] {
			return Grading{}, apperr.Invalid(field, "QUESTION_NOT_IN_QUIZ",
				fmt.Sprintf("question %s is not a question of this quiz", a.QuestionID))
		}
		if _, dup := byID[a.QuestionID]; dup {
			return Grading{}, apperr.Invalid(field, "QUESTION_ANSWERED_TWICE",
				fmt.Sprintf("question %s is answered more than once", a.QuestionID))
		}
		byID[a.QuestionID] = a.Answer
	}
	g := Grading{Feedback: make([]Feedback, 0, len(q.Questions))}
	for _, ex := range q.Questions {
		f := Feedback{QuestionID: ex.GetId(), Explanation: ex.GetExplanation()}
		ans, answered := byID[ex.GetId()]
		if answered {
			res, err := exercise.Grade(ex, ans)
			if err != nil {
				return Grading{}, answerError(answerIndex(answers, ex.GetId()), err)
			}
			f.Answered, f.Correct, f.Expected = true, res.Correct, res.Expected
			if res.Explanation != "" {
				f.Explanation = res.Explanation
			}
		} else {
			f.Expected = exercise.Expected(ex)
		}
		if f.Correct {
			g.Correct++
		}
		g.Feedback = append(g.Feedback, f)
	}
	g.ScorePercent = ScorePercent(g.Correct, len(q.Questions))
	g.Passed = Passed(g.ScorePercent, q.PassingScorePercent)
	return g, nil
}

func answerIndex(answers []Answer, questionID string) int {
	for i, a := range answers {
		if a.QuestionID == questionID {
			return i
		}
	}
	return -1
}

// answerError points a grading error (e.g. an answer of the wrong kind) at
// answer i.
func answerError(i int, err error) error {
	field := fmt.Sprintf("answers[%d].answer", i)
	if e, ok := apperr.As(err); ok {
		out := *e
		out.Field = field
		return &out
	}
	return fmt.Errorf("grade %s: %w", field, err) // stored content is broken: internal
}

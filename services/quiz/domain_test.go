package quiz

import (
	"strings"
	"testing"
	"time"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
)

func mcq(id string, correct int32) *lessonv1.Exercise {
	return &lessonv1.Exercise{Id: id, Explanation: "hello = xin chào", Kind: &lessonv1.Exercise_MultipleChoice{
		MultipleChoice: &lessonv1.MultipleChoice{Prompt: "Hello?", Choices: []string{"xin chào", "tạm biệt", "cảm ơn"}, CorrectIndex: correct},
	}}
}

func translate(id string, accepted ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Id: id, Kind: &lessonv1.Exercise_Translate{
		Translate: &lessonv1.Translate{Prompt: "Cảm ơn", AcceptedAnswers: accepted},
	}}
}

func choice(i int32) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: i}}
}

func text(s string) *lessonv1.Answer { return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: s}} }

func reasonOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Reason
	}
	return ""
}

func TestScorePercentRoundsDown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		correct, total int
		want           int32
	}{{0, 3, 0}, {1, 3, 33}, {2, 3, 66}, {3, 3, 100}, {7, 10, 70}, {0, 0, 0}, {199, 200, 99}}
	for _, c := range cases {
		if got := ScorePercent(c.correct, c.total); got != c.want {
			t.Errorf("ScorePercent(%d, %d) = %d, want %d", c.correct, c.total, got, c.want)
		}
	}
	if !Passed(70, 70) || Passed(69, 70) || !Passed(100, 100) {
		t.Error("Passed: the passing score itself passes, one below does not")
	}
}

func TestCoveredLessonsAndUnlockRule(t *testing.T) {
	t.Parallel()
	const l1, l2, l3 = "l1", "l2", "l3"
	cases := []struct {
		name      string
		lesson    string
		covered   []string
		completed map[string]bool
		want      []string
		unlocked  bool
	}{
		{"unit quiz with no covered lessons is open from the start", "", nil, nil, []string{}, true},
		{"lesson quiz covers its lesson by default: locked", l1, nil, nil, []string{l1}, false},
		{"lesson quiz covers its lesson by default: unlocked", l1, nil, map[string]bool{l1: true}, []string{l1}, true},
		{"explicit list wins over the lesson", l1, []string{l2, l3}, map[string]bool{l1: true, l2: true}, []string{l2, l3}, false},
		{"all covered completed", "", []string{l2, l3}, map[string]bool{l2: true, l3: true}, []string{l2, l3}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := CoveredLessons(c.lesson, c.covered)
			if strings.Join(got, ",") != strings.Join(c.want, ",") || got == nil {
				t.Fatalf("CoveredLessons = %v, want %v", got, c.want)
			}
			if u := Unlocked(got, c.completed); u != c.unlocked {
				t.Fatalf("Unlocked = %v, want %v", u, c.unlocked)
			}
		})
	}
	if StatusOf(true, false) != StatusPassed || StatusOf(false, true) != StatusUnlocked || StatusOf(false, false) != StatusLocked {
		t.Error("StatusOf: passed > unlocked > locked")
	}
}

func TestDeadlineAndSubmitChecks(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	deadline := Deadline(start, 300)
	if !deadline.Equal(start.Add(5 * time.Minute)) {
		t.Fatalf("deadline %v", deadline)
	}
	a := Attempt{ID: "a1", StartedAt: start, Deadline: deadline}
	if err := a.CheckSubmit(deadline); err != nil || !a.Open(deadline) {
		t.Fatalf("at the deadline itself: %v", err)
	}
	err := a.CheckSubmit(deadline.Add(time.Millisecond))
	if reasonOf(err) != "QUIZ_EXPIRED" || apperr.KindOf(err) != apperr.KindFailedPrecondition || a.Open(deadline.Add(time.Second)) {
		t.Fatalf("late: %v", err)
	}
	if !strings.Contains(err.Error(), "2026-03-02T10:05:00Z") {
		t.Errorf("the expiry message should say when the time ran out: %v", err)
	}
	sub := start.Add(time.Minute)
	a.SubmittedAt = &sub
	if err := a.CheckSubmit(start.Add(2 * time.Minute)); reasonOf(err) != "ALREADY_SUBMITTED" {
		t.Fatalf("resubmit: %v", err)
	}
	if err := a.CheckSubmit(deadline.Add(time.Hour)); reasonOf(err) != "ALREADY_SUBMITTED" {
		t.Fatalf("a submitted attempt says so even after the deadline: %v", err)
	}
}

func TestCheckStart(t *testing.T) {
	t.Parallel()
	q := Quiz{Title: "Greetings", MaxAttempts: 3}
	if err := CheckStart(q, false, 0); reasonOf(err) != "QUIZ_LOCKED" || apperr.KindOf(err) != apperr.KindFailedPrecondition {
		t.Fatalf("locked: %v", err)
	}
	if err := CheckStart(q, true, 2); err != nil {
		t.Fatalf("third attempt: %v", err)
	}
	if err := CheckStart(q, true, 3); reasonOf(err) != "NO_ATTEMPTS_LEFT" {
		t.Fatalf("fourth attempt: %v", err)
	}
}

func TestNewQuizDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	d := Draft{CourseID: "c", UnitID: "u", LessonID: "l", Title: "  Check ", Questions: []*lessonv1.Exercise{mcq("", 0), translate("", "thank you")}}
	q, err := NewQuiz("q1", d, now)
	if err != nil {
		t.Fatal(err)
	}
	if q.TimeLimitSeconds != 300 || q.MaxAttempts != 3 || q.PassingScorePercent != 70 || q.Title != "Check" {
		t.Errorf("defaults: %+v", q)
	}
	if strings.Join(q.CoveredLessonIDs, ",") != "l" || q.Questions[0].Position != 1 || q.Questions[1].Position != 2 {
		t.Errorf("covered %v, positions %d %d", q.CoveredLessonIDs, q.Questions[0].Position, q.Questions[1].Position)
	}
	if q.SortKey() != "c/u/l" || (Quiz{CourseID: "c", UnitID: "u"}).SortKey() <= "c/u/ffffffff" {
		t.Errorf("sort key: a unit quiz must sort after its lessons' quizzes")
	}

	bad := d
	bad.Questions = []*lessonv1.Exercise{mcq("", 0), mcq("", 7)}
	_, err = NewQuiz("q1", bad, now)
	if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || !strings.HasPrefix(e.Field, "questions[1]") {
		t.Fatalf("an invalid question is named: %v", err)
	}
	bad = d
	bad.Title = "   "
	if _, err := NewQuiz("q1", bad, now); reasonOf(err) != "TITLE_BLANK" {
		t.Fatalf("blank title: %v", err)
	}
}

func TestGrade(t *testing.T) {
	t.Parallel()
	q := Quiz{PassingScorePercent: 70, Questions: []*lessonv1.Exercise{
		mcq("q1", 0), translate("q2", "thank you", "thanks"), mcq("q3", 1),
	}}
	g, err := Grade(q, []Answer{{"q1", choice(0)}, {"q2", text("Thanks!")}})
	if err != nil {
		t.Fatal(err)
	}
	if g.Correct != 2 || g.ScorePercent != 66 || g.Passed || g.Perfect() {
		t.Fatalf("grading %+v", g)
	}
	f := g.Feedback
	if len(f) != 3 || !f[0].Correct || !f[0].Answered || f[0].Expected != "xin chào" || f[0].Explanation != "hello = xin chào" {
		t.Errorf("feedback 1: %+v", f[0])
	}
	if !f[1].Correct || f[1].Expected != "thank you" {
		t.Errorf("feedback 2: %+v", f[1])
	}
	if f[2].Answered || f[2].Correct || f[2].Expected != "tạm biệt" || f[2].QuestionID != "q3" {
		t.Errorf("unanswered question counts as wrong, with its expected answer: %+v", f[2])
	}

	g, err = Grade(q, []Answer{{"q3", choice(1)}, {"q2", text("thank you")}, {"q1", choice(0)}})
	if err != nil || !g.Passed || !g.Perfect() || g.ScorePercent != 100 {
		t.Fatalf("perfect: %+v %v", g, err)
	}

	_, err = Grade(q, []Answer{{"q1", choice(0)}, {"other", choice(0)}})
	if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Field != "answers[1].question_id" || !strings.Contains(e.Message, "other") {
		t.Fatalf("answer to a question of another quiz: %v", err)
	}
	_, err = Grade(q, []Answer{{"q1", text("xin chào")}})
	if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Field != "answers[0].answer" {
		t.Fatalf("answer of the wrong kind: %v", err)
	}
}

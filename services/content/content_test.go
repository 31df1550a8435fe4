package content

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/services/exercise"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

func TestDemoParsesAndCounts(t *testing.T) {
	t.Parallel()
	b, err := Demo()
	if err != nil {
		t.Fatalf("Demo: %v", err)
	}
	c := b.Course
	if c.GetSlug() != "en-for-vi" || c.GetSourceLanguage() != "vi" || c.GetTargetLanguage() != "en" {
		t.Errorf("course = %s/%s→%s", c.GetSlug(), c.GetSourceLanguage(), c.GetTargetLanguage())
	}
	if c.GetTitle() != "English for Vietnamese speakers" {
		t.Errorf("title = %q", c.GetTitle())
	}
	if !b.Publish {
		t.Error("demo is not published")
	}
	s := b.Counts()
	if s.Units < 3 || s.Lessons < 9 || s.Words < 60 || s.Quizzes != 3 {
		t.Errorf("counts = %+v, want ≥3 units, ≥9 lessons, ≥60 words, 3 quizzes", s)
	}

	lessonUnit := map[string]string{}
	kindsAll := map[string]bool{}
	for _, u := range c.GetUnits() {
		if n := len(u.GetLessons()); n != 3 {
			t.Errorf("unit %s has %d lessons, want 3", u.GetKey(), n)
		}
		for _, l := range u.GetLessons() {
			lessonUnit[l.GetKey()] = u.GetKey()
			if x := l.GetXpReward(); x < 10 || x > 20 {
				t.Errorf("lesson %s: xp %d not in 10..20", l.GetKey(), x)
			}
			if n := len(l.GetWords()); n < 6 || n > 8 {
				t.Errorf("lesson %s: %d words, want about 7", l.GetKey(), n)
			}
			for _, w := range l.GetWords() {
				if w.GetTranslation() == "" || w.GetPartOfSpeech() == "" || w.GetExample() == "" || w.GetExampleTranslation() == "" {
					t.Errorf("lesson %s: word %q is incomplete", l.GetKey(), w.GetTerm())
				}
				if !strings.Contains(strings.ToLower(w.GetExample()), strings.Fields(w.GetTerm())[0][:3]) {
					t.Errorf("lesson %s: example %q does not use %q", l.GetKey(), w.GetExample(), w.GetTerm())
				}
			}
			if n := len(l.GetExercises()); n < 5 || n > 8 {
				t.Errorf("lesson %s: %d exercises, want 5 to 8", l.GetKey(), n)
			}
			kinds := map[string]bool{}
			for i, ex := range l.GetExercises() {
				kinds[kindOf(ex)] = true
				kindsAll[kindOf(ex)] = true
				if ex.GetExplanation() == "" {
					t.Errorf("lesson %s exercise %d: no explanation", l.GetKey(), i+1)
				}
				checkDemoExercise(t, fmt.Sprintf("lesson %s exercise %d", l.GetKey(), i+1), ex)
			}
			if len(kinds) != 5 {
				t.Errorf("lesson %s: kinds %v, want all five", l.GetKey(), slices.Sorted(maps.Keys(kinds)))
			}
		}
	}
	if len(kindsAll) != 5 {
		t.Errorf("kinds = %v", kindsAll)
	}

	for _, q := range b.Quizzes {
		d := q.Def
		if n := len(d.GetQuestions()); n < 6 || n > 10 {
			t.Errorf("quiz %s: %d questions, want 6 to 10", d.GetKey(), n)
		}
		if d.GetTimeLimitSeconds() != 300 || d.GetMaxAttempts() != 3 || d.GetPassingScorePercent() != 70 {
			t.Errorf("quiz %s: limits %d/%d/%d", d.GetKey(), d.GetTimeLimitSeconds(), d.GetMaxAttempts(), d.GetPassingScorePercent())
		}
		if q.LessonKey != "" {
			t.Errorf("quiz %s: attached to lesson %s, want a unit quiz", d.GetKey(), q.LessonKey)
		}
		if len(q.CoveredLessonKeys) == 0 {
			t.Errorf("quiz %s: covers no lesson (it would be unlocked from the start)", d.GetKey())
		}
		for _, k := range q.CoveredLessonKeys {
			if lessonUnit[k] != q.UnitKey {
				t.Errorf("quiz %s: covered lesson %s is not in unit %s", d.GetKey(), k, q.UnitKey)
			}
		}
		if d.GetCourseId() != "" || d.GetUnitId() != "" || len(d.GetCoveredLessonIds()) != 0 {
			t.Errorf("quiz %s: ids set before import", d.GetKey())
		}
		kinds := map[string]bool{}
		for i, ex := range d.GetQuestions() {
			kinds[kindOf(ex)] = true
			checkDemoExercise(t, fmt.Sprintf("quiz %s question %d", d.GetKey(), i+1), ex)
		}
		if len(kinds) != 5 {
			t.Errorf("quiz %s: kinds %v, want all five", d.GetKey(), slices.Sorted(maps.Keys(kinds)))
		}
	}
	units := map[string]bool{}
	for _, q := range b.Quizzes {
		units[q.UnitKey] = true
	}
	if len(units) != 3 {
		t.Errorf("quizzes for units %v, want one per unit", units)
	}
}

func kindOf(ex *lessonv1.Exercise) string {
	switch ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		return "multiple_choice"
	case *lessonv1.Exercise_Translate:
		return "translate"
	case *lessonv1.Exercise_FillBlank:
		return "fill_blank"
	case *lessonv1.Exercise_MatchPairs:
		return "match_pairs"
	case *lessonv1.Exercise_Listen:
		return "listen"
	}
	return "none"
}

func isASCII(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII {
			return false
		}
	}
	return true
}

// checkDemoExercise grades the demo's own answers: each must count as
// correct, Vietnamese translations also without accents.
func checkDemoExercise(t *testing.T, where string, ex *lessonv1.Exercise) {
	t.Helper()
	grade := func(ans *lessonv1.Answer) bool {
		t.Helper()
		res, err := exercise.Grade(ex, ans)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return false
		}
		return res.Correct
	}
	text := func(s string) *lessonv1.Answer { return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: s}} }
	var accepted []string
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		if !grade(&lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: k.MultipleChoice.GetCorrectIndex()}}) {
			t.Errorf("%s: correct choice graded wrong", where)
		}
	case *lessonv1.Exercise_Translate:
		accepted = k.Translate.GetAcceptedAnswers()
		vietnamese := !isASCII(strings.Join(accepted, " "))
		if vietnamese && !k.Translate.GetAccentsOptional() {
			t.Errorf("%s: Vietnamese answer without accents_optional", where)
		}
		if vietnamese && !grade(text(exercise.Normalize(accepted[0], true))) {
			t.Errorf("%s: answer without accents graded wrong", where)
		}
	case *lessonv1.Exercise_FillBlank:
		accepted = k.FillBlank.GetAcceptedAnswers()
	case *lessonv1.Exercise_Listen:
		accepted = k.Listen.GetAcceptedAnswers()
		if k.Listen.GetAudioMediaId() != "" {
			t.Errorf("%s: audio id set", where)
		}
	case *lessonv1.Exercise_MatchPairs:
		ps := slices.Clone(k.MatchPairs.GetPairs())
		slices.Reverse(ps)
		if !grade(&lessonv1.Answer{Value: &lessonv1.Answer_Pairs{Pairs: &lessonv1.MatchPairsAnswer{Pairs: ps}}}) {
			t.Errorf("%s: correct pairs graded wrong", where)
		}
	}
	for _, a := range accepted {
		if !grade(text(strings.ToUpper(a))) {
			t.Errorf("%s: accepted answer %q graded wrong", where, a)
		}
	}
	if accepted != nil && grade(text("something else entirely")) {
		t.Errorf("%s: a wrong answer graded correct", where)
	}
}

const goodFile = `
course:
  slug: tiny
  title: Tiny course
  source_language: vi
  targetLanguage: en
  units:
    - key: u1
      title: Unit one
      lessons:
        - key: l1
          title: Lesson one
          xpReward: 10
          words:
            - {term: hello, translation: xin chào}
          exercises:
            - multipleChoice: {prompt: "Hello?", choices: [Hello, Bye], correctIndex: 0}
        - key: l2
          title: Lesson two
          exercises:
            - fillBlank: {sentenceWithBlank: "Count: 1, 2, ___", acceptedAnswers: [3]}
            - translate: {prompt: "Xin chào", acceptedAnswers: [Hello]}
    - key: u2
      title: Unit two
      lessons:
        - key: l3
          title: Lesson three
          exercises:
            - listen: {prompt: "Type it", acceptedAnswers: [Hi]}
quizzes:
  - key: q1
    unit: u1
    coveredLessons: [l1, l2]
    title: Quiz one
    questions:
      - matchPairs: {pairs: [{left: a, right: b}, {left: c, right: d}]}
  - key: q2
    unit: u2
    lesson: l3
    title: Quiz two
    questions:
      - listen: {acceptedAnswers: [Hi]}
`

func TestParseGoodFile(t *testing.T) {
	t.Parallel()
	b, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := b.Course.GetSourceLanguage(); got != "vi" {
		t.Errorf("snake_case field: source language = %q", got)
	}
	// An unquoted number is read as text where text is expected.
	if got := b.Course.GetUnits()[0].GetLessons()[1].GetExercises()[0].GetFillBlank().GetAcceptedAnswers(); !slices.Equal(got, []string{"3"}) {
		t.Errorf("accepted answers = %q", got)
	}
	if len(b.Quizzes) != 2 {
		t.Fatalf("quizzes = %d", len(b.Quizzes))
	}
	q := b.Quizzes[0]
	if q.UnitKey != "u1" || q.LessonKey != "" || !slices.Equal(q.CoveredLessonKeys, []string{"l1", "l2"}) || q.Def.GetKey() != "q1" {
		t.Errorf("quiz 1 = %+v", q)
	}
	if q := b.Quizzes[1]; q.UnitKey != "u2" || q.LessonKey != "l3" {
		t.Errorf("quiz 2 = %+v", q)
	}
	if s := b.Counts(); s.Units != 2 || s.Lessons != 3 || s.Words != 1 || s.Exercises != 4 || s.Quizzes != 2 {
		t.Errorf("counts = %+v", s)
	}
}

func TestParseJSON(t *testing.T) {
	t.Parallel()
	const js = `{"course": {"slug": "j", "title": "J", "sourceLanguage": "vi", "targetLanguage": "en",
	  "units": [{"key": "u", "title": "U", "lessons": [{"key": "l", "title": "L",
	    "exercises": [{"translate": {"prompt": "Chào", "acceptedAnswers": ["Hi", "Hello"]}}]}]}]},
	  "publish": false}`
	b, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if b.Publish {
		t.Error("publish: false ignored")
	}
	if got := b.Course.GetUnits()[0].GetLessons()[0].GetExercises()[0].GetTranslate().GetAcceptedAnswers(); len(got) != 2 {
		t.Errorf("answers = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(string) string
		want []string // all must appear in the error
	}{
		{"unknown field in an exercise", func(s string) string {
			return strings.Replace(s, `translate: {prompt: "Xin chào"`, `translate: {promt: "Xin chào"`, 1)
		}, []string{`lesson "l2"`, "exercise 2", `unknown field "promt"`, "line 22"}},
		{"unknown field in a lesson", func(s string) string {
			return strings.Replace(s, "xpReward: 10", "xp: 10", 1)
		}, []string{`unit "u1" > lesson "l1"`, `unknown field "xp"`}},
		{"unknown top-level key", func(s string) string { return "cours: {}\n" + s }, []string{`unknown key "cours"`}},
		{"bad exercise: blank answer", func(s string) string {
			return strings.Replace(s, "acceptedAnswers: [Hello]", `acceptedAnswers: ["?!"]`, 1)
		}, []string{`lesson "l2"`, "exercise 2", "translate.accepted_answers[0]", "blank"}},
		{"bad exercise: index out of range", func(s string) string {
			return strings.Replace(s, "correctIndex: 0", "correctIndex: 5", 1)
		}, []string{`lesson "l1"`, "exercise 1", "correct_index"}},
		{"bad exercise: no blank", func(s string) string {
			return strings.Replace(s, "Count: 1, 2, ___", "Count: 1, 2, 3", 1)
		}, []string{`lesson "l2"`, "exercise 1", "___"}},
		{"two kinds", func(s string) string {
			return strings.Replace(s, `- listen: {prompt: "Type it"`, `- translate: {prompt: x, acceptedAnswers: [x]}
              listen: {prompt: "Type it"`, 1)
		}, []string{`lesson "l3"`, "exercise 1", "cannot both be set"}},
		{"no kind", func(s string) string {
			return strings.Replace(s, `- listen: {prompt: "Type it", acceptedAnswers: [Hi]}`, `- explanation: nothing`, 1)
		}, []string{`lesson "l3"`, "exercise 1"}},
		{"wrong type", func(s string) string {
			return strings.Replace(s, "xpReward: 10", "xpReward: lots", 1)
		}, []string{`lesson "l1"`, "xpReward", "whole number"}},
		{"list expected", func(s string) string {
			return strings.Replace(s, "acceptedAnswers: [Hi]}", "acceptedAnswers: Hi}", 1)
		}, []string{`lesson "l3"`, "expected a list"}},
		{"proto rule: bad slug", func(s string) string {
			return strings.Replace(s, "slug: tiny", "slug: Tiny Course", 1)
		}, []string{"course > slug"}},
		{"proto rule: lesson key", func(s string) string {
			return strings.Replace(s, "key: l2", "key: L 2", 1)
		}, []string{"lesson", "key"}},
		{"duplicate lesson key", func(s string) string {
			return strings.Replace(s, "key: l3", "key: l1", 1)
		}, []string{`lesson key "l1" is used twice`}},
		{"duplicate term", func(s string) string {
			return strings.Replace(s, "- {term: hello, translation: xin chào}", "- {term: hello, translation: xin chào}\n            - {term: Hello!, translation: chào}", 1)
		}, []string{`lesson "l1"`, "word 2", "distinct"}},
		{"quiz unknown unit", func(s string) string {
			return strings.Replace(s, "unit: u2", "unit: u9", 1)
		}, []string{`quiz "q2"`, `unit "u9"`}},
		{"quiz lesson of another unit", func(s string) string {
			return strings.Replace(s, "lesson: l3", "lesson: l1", 1)
		}, []string{`quiz "q2"`, `lesson "l1" is in unit "u1"`}},
		{"quiz unknown covered lesson", func(s string) string {
			return strings.Replace(s, "coveredLessons: [l1, l2]", "coveredLessons: [l1, nope]", 1)
		}, []string{`quiz "q1"`, `covered lesson "nope"`}},
		{"quiz id instead of key", func(s string) string {
			return strings.Replace(s, "unit: u1", "unitId: 5a4f5b6e-1111-4111-8111-111111111111", 1)
		}, []string{`quiz "q1"`, "unitId", "give the key with unit"}},
		{"quiz bad question", func(s string) string {
			return strings.Replace(s, "{left: c, right: d}", "{left: c, right: B}", 1)
		}, []string{`quiz "q1"`, "question 1", "match_pairs.pairs[1].right"}},
		{"quiz unknown field", func(s string) string {
			return strings.Replace(s, "title: Quiz two", "titel: Quiz two", 1)
		}, []string{`quiz "q2"`, `unknown field "titel"`}},
		{"quiz without questions", func(s string) string {
			return strings.Replace(s, "      - listen: {acceptedAnswers: [Hi]}\n", "", 1) + ""
		}, []string{`quiz "q2"`, "questions"}},
		{"not yaml", func(string) string { return "course: [unclosed" }, []string{"not valid YAML"}},
		{"empty", func(string) string { return "" }, []string{"empty"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := c.edit(goodFile)
			if src == goodFile && c.name != "not yaml" && c.name != "empty" {
				t.Fatal("edit changed nothing")
			}
			_, err := Parse([]byte(src))
			if err == nil {
				t.Fatal("no error")
			}
			if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Reason != ReasonInvalidContent {
				t.Errorf("err = %v, want Invalid %s", err, ReasonInvalidContent)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseAliases(t *testing.T) {
	t.Parallel()
	src := strings.Replace(goodFile, "      - listen: {acceptedAnswers: [Hi]}\n", "      - *hi\n", 1)
	src = strings.Replace(src, `- listen: {prompt: "Type it", acceptedAnswers: [Hi]}`, `- &hi {listen: {prompt: "Type it", acceptedAnswers: [Hi]}}`, 1)
	b, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := b.Quizzes[1].Def.GetQuestions()[0].GetListen().GetPrompt(); got != "Type it" {
		t.Errorf("aliased question prompt = %q", got)
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	src := strings.Replace(goodFile, "xpReward: 10", "xp: 10", 1)
	src = strings.Replace(src, "title: Quiz two", "titel: Quiz two", 1)
	_, err := Parse([]byte(src))
	if err == nil || !strings.Contains(err.Error(), `"xp"`) || !strings.Contains(err.Error(), `"titel"`) || !strings.Contains(err.Error(), "2 problems") {
		t.Errorf("err = %v", err)
	}
}

// fakeLesson is an in-memory LessonService: ImportCourse keeps ids by slug
// and keys, like the real one.
type fakeLesson struct {
	lessonv1.LessonServiceClient                   // other methods are not used
	ids                          map[string]string // "unit:key" / "lesson:key" -> id
	calls                        []*lessonv1.ImportCourseRequest
	n                            int
}

func (f *fakeLesson) id(kind, key string) (string, bool) {
	k := kind + ":" + key
	if id, ok := f.ids[k]; ok {
		return id, false
	}
	f.n++
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", f.n)
	f.ids[k] = id
	return id, true
}

func (f *fakeLesson) ImportCourse(_ context.Context, req *lessonv1.ImportCourseRequest, _ ...grpc.CallOption) (*lessonv1.ImportCourseResponse, error) {
	f.calls = append(f.calls, proto.Clone(req).(*lessonv1.ImportCourseRequest))
	cid, created := f.id("course", req.GetBundle().GetSlug())
	resp := &lessonv1.ImportCourseResponse{
		Course:    &lessonv1.Course{Id: cid, Slug: req.GetBundle().GetSlug()},
		Created:   created,
		UnitIds:   map[string]string{},
		LessonIds: map[string]string{},
	}
	for _, u := range req.GetBundle().GetUnits() {
		resp.UnitIds[u.GetKey()], _ = f.id("unit", u.GetKey())
		for _, l := range u.GetLessons() {
			resp.LessonIds[l.GetKey()], _ = f.id("lesson", l.GetKey())
		}
	}
	return resp, nil
}

type fakeQuiz struct {
	quizv1.QuizServiceClient
	quizzes map[string]*quizv1.ImportQuizRequest // by key
	calls   int
	fail    error
}

func (f *fakeQuiz) ImportQuiz(_ context.Context, req *quizv1.ImportQuizRequest, _ ...grpc.CallOption) (*quizv1.ImportQuizResponse, error) {
	f.calls++
	if f.fail != nil {
		return nil, f.fail
	}
	_, exists := f.quizzes[req.GetKey()]
	f.quizzes[req.GetKey()] = proto.Clone(req).(*quizv1.ImportQuizRequest)
	return &quizv1.ImportQuizResponse{Quiz: &quizv1.Quiz{Key: req.GetKey()}, Created: !exists}, nil
}

func TestImport(t *testing.T) {
	t.Parallel()
	b, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	lc := &fakeLesson{ids: map[string]string{}}
	qc := &fakeQuiz{quizzes: map[string]*quizv1.ImportQuizRequest{}}
	ctx := context.Background()

	s1, err := Import(ctx, lc, qc, b)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !s1.Created || s1.CourseID != lc.ids["course:tiny"] || s1.Units != 2 || s1.Lessons != 3 || s1.Exercises != 4 || s1.Words != 1 || s1.Quizzes != 2 {
		t.Errorf("summary = %+v", s1)
	}
	if !lc.calls[0].GetPublish() || lc.calls[0].GetBundle().GetSlug() != "tiny" {
		t.Errorf("ImportCourse request = %v", lc.calls[0])
	}
	q1, q2 := qc.quizzes["q1"], qc.quizzes["q2"]
	if q1 == nil || q2 == nil {
		t.Fatalf("quizzes = %v", slices.Collect(maps.Keys(qc.quizzes)))
	}
	if q1.GetCourseId() != s1.CourseID || q1.GetUnitId() != lc.ids["unit:u1"] || q1.GetLessonId() != "" ||
		!slices.Equal(q1.GetCoveredLessonIds(), []string{lc.ids["lesson:l1"], lc.ids["lesson:l2"]}) {
		t.Errorf("q1 = %v (ids %v)", q1, lc.ids)
	}
	if q2.GetUnitId() != lc.ids["unit:u2"] || q2.GetLessonId() != lc.ids["lesson:l3"] || len(q2.GetCoveredLessonIds()) != 0 {
		t.Errorf("q2 = %v (ids %v)", q2, lc.ids)
	}
	if q1.GetTitle() != "Quiz one" || len(q1.GetQuestions()) != 1 {
		t.Errorf("q1 content = %v", q1)
	}
	// The bundle is not changed by Import.
	if b.Quizzes[0].Def.GetUnitId() != "" {
		t.Error("Import changed the bundle")
	}

	// Importing again updates in place: same ids, no new quizzes.
	before := maps.Clone(qc.quizzes)
	s2, err := Import(ctx, lc, qc, b)
	if err != nil {
		t.Fatalf("second Import: %v", err)
	}
	if s2.Created || s2.CourseID != s1.CourseID {
		t.Errorf("second summary = %+v", s2)
	}
	if len(qc.quizzes) != 2 || qc.calls != 4 {
		t.Errorf("quizzes = %d, calls = %d", len(qc.quizzes), qc.calls)
	}
	for k, q := range qc.quizzes {
		if !proto.Equal(q, before[k]) {
			t.Errorf("quiz %s changed on re-import: %v vs %v", k, q, before[k])
		}
	}
}

func TestImportDemo(t *testing.T) {
	t.Parallel()
	b, err := Demo()
	if err != nil {
		t.Fatal(err)
	}
	lc := &fakeLesson{ids: map[string]string{}}
	qc := &fakeQuiz{quizzes: map[string]*quizv1.ImportQuizRequest{}}
	s, err := Import(context.Background(), lc, qc, b)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if s.Units != 3 || s.Lessons != 9 || s.Words < 60 || s.Quizzes != 3 {
		t.Errorf("summary = %+v", s)
	}
	for key, q := range qc.quizzes {
		if len(q.GetCoveredLessonIds()) == 0 || q.GetUnitId() == "" || q.GetCourseId() != s.CourseID {
			t.Errorf("quiz %s = ids %s %s %v", key, q.GetCourseId(), q.GetUnitId(), q.GetCoveredLessonIds())
		}
	}
}

func TestImportErrors(t *testing.T) {
	t.Parallel()
	b, err := Parse([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("quiz service down")
	qc := &fakeQuiz{quizzes: map[string]*quizv1.ImportQuizRequest{}, fail: boom}
	_, err = Import(context.Background(), &fakeLesson{ids: map[string]string{}}, qc, b)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `quiz "q1"`) {
		t.Errorf("err = %v", err)
	}
	// A lesson service that does not return a unit's id.
	q := b.Quizzes[0]
	if _, err := q.Request("c", map[string]string{}, map[string]string{}); err == nil || !strings.Contains(err.Error(), `unit "u1"`) {
		t.Errorf("Request err = %v", err)
	}
}

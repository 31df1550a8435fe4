package lesson

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
)

func mc(prompt string, correct int32, choices ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Explanation: "because", Kind: &lessonv1.Exercise_MultipleChoice{
		MultipleChoice: &lessonv1.MultipleChoice{Prompt: prompt, Choices: choices, CorrectIndex: correct}}}
}

func translate(prompt string, accepted ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Kind: &lessonv1.Exercise_Translate{
		Translate: &lessonv1.Translate{Prompt: prompt, AcceptedAnswers: accepted}}}
}

func fieldOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Field
	}
	return ""
}

func reasonOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Reason
	}
	return ""
}

func TestStatuses(t *testing.T) {
	t.Parallel()
	order := []string{"a", "b", "c", "d"}
	set := func(ids ...string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	L, A, P, C := StatusLocked, StatusAvailable, StatusInProgress, StatusCompleted
	cases := []struct {
		name            string
		completed, open map[string]bool
		want            []Status
	}{
		{"new learner: only the first is available", set(), set(), []Status{A, L, L, L}},
		{"first in progress", set(), set("a"), []Status{P, L, L, L}},
		{"first completed unlocks the second", set("a"), set(), []Status{C, A, L, L}},
		{"completed and started again stays completed", set("a"), set("a"), []Status{C, A, L, L}},
		{"second in progress", set("a"), set("b"), []Status{C, P, L, L}},
		{"all completed", set("a", "b", "c", "d"), set(), []Status{C, C, C, C}},
		// A lesson inserted before completed ones (a later publication) is available,
		// and what comes after a completed lesson stays available.
		{"gap after reordering", set("a", "c"), set(), []Status{C, A, C, A}},
		// An attempt started while available stays in progress after a reordering locks it.
		{"open attempt on a now-locked lesson", set(), set("c"), []Status{A, L, P, L}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Statuses(order, c.completed, c.open); !slices.Equal(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	if got := Statuses(nil, nil, nil); len(got) != 0 {
		t.Fatalf("empty course: %v", got)
	}
}

func TestScore(t *testing.T) {
	t.Parallel()
	cases := []struct {
		correct, total int
		score          int32
		accuracy       float64
	}{
		{0, 0, 0, 0},   // no exercises
		{0, 4, 0, 0},   // nothing right (or nothing answered: unanswered count as wrong)
		{4, 4, 100, 1}, // perfect
		{1, 3, 33, 1.0 / 3},
		{2, 3, 67, 2.0 / 3}, // rounded, not truncated
		{1, 8, 13, 0.125},   // 12.5 rounds half away from zero
		{9, 4, 100, 1},      // clamped: never above 100
		{-1, 4, 0, 0},
	}
	for _, c := range cases {
		score, acc := Score(c.correct, c.total)
		if score != c.score || acc != c.accuracy {
			t.Errorf("Score(%d, %d) = %d, %v; want %d, %v", c.correct, c.total, score, acc, c.score, c.accuracy)
		}
	}
}

func TestMove(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "b", "c", "d"}
	cases := []struct {
		id   string
		pos  int32
		want string
	}{
		{"a", 1, "abcd"}, {"a", 3, "bcad"}, {"d", 1, "dabc"}, {"b", 99, "acdb"}, {"c", 0, "cabd"},
	}
	for _, c := range cases {
		if got := strings.Join(Move(ids, c.id, c.pos), ""); got != c.want {
			t.Errorf("Move(%s to %d) = %s, want %s", c.id, c.pos, got, c.want)
		}
	}
	if strings.Join(ids, "") != "abcd" {
		t.Fatalf("Move modified its input: %v", ids)
	}
}

func TestPlanExercises(t *testing.T) {
	t.Parallel()
	n := 0
	newID := func() string { n++; return fmt.Sprintf("new-%d", n) }
	in := []*lessonv1.Exercise{translate("b"), mc("x", 0, "1", "2"), translate("a")}
	in[0].Id, in[2].Id = "e2", "e1"
	out, err := PlanExercises([]string{"e1", "e2", "e3"}, in, newID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ex := range out {
		got = append(got, fmt.Sprintf("%s@%d", ex.GetId(), ex.GetPosition()))
	}
	if strings.Join(got, " ") != "e2@1 new-1@2 e1@3" {
		t.Fatalf("plan: %v", got)
	}
	if in[1].GetId() != "" || in[0].GetPosition() != 0 {
		t.Fatal("PlanExercises modified its input")
	}

	foreign := []*lessonv1.Exercise{translate("a")}
	foreign[0].Id = "other-lesson-exercise"
	if _, err := PlanExercises([]string{"e1"}, foreign, newID); fieldOf(err) != "exercises[0].id" || reasonOf(err) != "EXERCISE_NOT_IN_LESSON" {
		t.Fatalf("foreign id: %v", err)
	}
	dup := []*lessonv1.Exercise{translate("a"), translate("b")}
	dup[0].Id, dup[1].Id = "e1", "e1"
	if _, err := PlanExercises([]string{"e1"}, dup, newID); fieldOf(err) != "exercises[1].id" || reasonOf(err) != "EXERCISE_DUPLICATE" {
		t.Fatalf("duplicate id: %v", err)
	}
}

func TestReplaceByPosition(t *testing.T) {
	t.Parallel()
	newID := func() string { return "fresh" }
	out := ReplaceByPosition([]string{"e1", "e2"}, []*lessonv1.Exercise{translate("a"), translate("b"), translate("c")}, newID)
	if out[0].GetId() != "e1" || out[1].GetId() != "e2" || out[2].GetId() != "fresh" || out[2].GetPosition() != 3 {
		t.Fatalf("grow: %v", out)
	}
	out = ReplaceByPosition([]string{"e1", "e2"}, []*lessonv1.Exercise{translate("a")}, newID)
	if len(out) != 1 || out[0].GetId() != "e1" {
		t.Fatalf("shrink: %v", out)
	}
}

func TestCheckWordsAndExercises(t *testing.T) {
	t.Parallel()
	ok := []Word{{Term: "apple", Translation: "quả táo"}, {Term: "pear", Translation: "quả lê"}}
	if err := CheckWords("words", ok); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		words  []Word
		field  string
		reason string
	}{
		{[]Word{{Term: " ", Translation: "x"}}, "words[0].term", "WORD_TERM_BLANK"},
		{[]Word{{Term: "a", Translation: ""}}, "words[0].translation", "WORD_TRANSLATION_BLANK"},
		{[]Word{{Term: "Apple", Translation: "x"}, {Term: " apple ", Translation: "y"}}, "words[1].term", "WORD_DUPLICATE"},
	}
	for _, c := range cases {
		err := CheckWords("words", c.words)
		if fieldOf(err) != c.field || reasonOf(err) != c.reason {
			t.Errorf("%v: got %v, want %s on %s", c.words, err, c.reason, c.field)
		}
	}
	// services/exercise checks each exercise; the field names the one at fault.
	err := CheckExercises("exercises", []*lessonv1.Exercise{mc("ok", 0, "a", "b"), mc("bad", 5, "a", "b")})
	if fieldOf(err) != "exercises[1].multiple_choice.correct_index" {
		t.Fatalf("bad exercise: %v (field %q)", err, fieldOf(err))
	}
	if err := CheckExercises("exercises", []*lessonv1.Exercise{{}}); !strings.HasPrefix(fieldOf(err), "exercises[0]") {
		t.Fatalf("exercise without kind: %v", err)
	}
}

func TestPublishAndArchive(t *testing.T) {
	t.Parallel()
	now := time.Unix(100, 0)
	l := Lesson{State: StateDraft}
	if _, err := l.Publish(now); reasonOf(err) != "LESSON_HAS_NO_EXERCISES" || l.State != StateDraft {
		t.Fatalf("publish without exercises: %v state %s", err, l.State)
	}
	l.Exercises = []*lessonv1.Exercise{translate("a", "b")}
	if changed, err := l.Publish(now); !changed || err != nil || l.State != StatePublished || !l.PublishedAt.Equal(now) {
		t.Fatalf("publish: %v %v %+v", changed, err, l)
	}
	if changed, err := l.Publish(now.Add(time.Second)); changed || err != nil || !l.PublishedAt.Equal(now) {
		t.Fatalf("publish again should change nothing: %v %v", changed, err)
	}
	if !l.Archive(now) || l.State != StateArchived || l.Archive(now) {
		t.Fatalf("archive: %+v", l)
	}
	if changed, _ := l.Publish(now.Add(time.Minute)); !changed || !l.PublishedAt.Equal(now.Add(time.Minute)) {
		t.Fatal("an archived lesson can be published again, with a new published_at")
	}
}

func TestCourseRules(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	c, err := NewCourse("id", CourseInput{Title: " English ", SourceLanguage: "vi", TargetLanguage: "en"}, now)
	if err != nil || c.Title != "English" {
		t.Fatalf("NewCourse: %+v %v", c, err)
	}
	for _, in := range []CourseInput{{Title: " ", SourceLanguage: "vi", TargetLanguage: "en"}, {Title: "x", SourceLanguage: "en", TargetLanguage: "en"}} {
		if _, err := NewCourse("id", in, now); apperr.KindOf(err) != apperr.KindInvalid {
			t.Errorf("%+v: %v", in, err)
		}
	}
	same, vi := "English", "vi"
	if changed, err := c.Apply(CoursePatch{Title: &same}, now.Add(time.Hour)); changed || err != nil || !c.UpdatedAt.Equal(now) {
		t.Fatalf("no-op patch: %v %v", changed, err)
	}
	if _, err := c.Apply(CoursePatch{TargetLanguage: &vi}, now); reasonOf(err) != "SAME_LANGUAGE" || c.TargetLanguage != "en" {
		t.Fatalf("bad patch must leave the course unchanged: %v %+v", err, c)
	}
}

func TestCheckBundleKeys(t *testing.T) {
	t.Parallel()
	lesson := func(key string) *lessonv1.LessonBundle {
		return &lessonv1.LessonBundle{Key: key, Title: key, Exercises: []*lessonv1.Exercise{translate("a", "b")}}
	}
	b := &lessonv1.CourseBundle{Slug: "c", Units: []*lessonv1.UnitBundle{
		{Key: "u1", Lessons: []*lessonv1.LessonBundle{lesson("l1"), lesson("l2")}},
		{Key: "u2", Lessons: []*lessonv1.LessonBundle{lesson("l3")}},
	}}
	if err := CheckBundleKeys(b); err != nil {
		t.Fatal(err)
	}
	b.Units[1].Lessons[0].Key = "l1"
	if err := CheckBundleKeys(b); fieldOf(err) != "bundle.units[1].lessons[0].key" {
		t.Fatalf("duplicate lesson key: %v", err)
	}
	b.Units[1].Lessons[0].Key, b.Units[1].Key = "l3", "u1"
	if err := CheckBundleKeys(b); fieldOf(err) != "bundle.units[1].key" {
		t.Fatalf("duplicate unit key: %v", err)
	}
}

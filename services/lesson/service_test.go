package lesson

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

// Callers: ids are UUIDs as in real tokens.
const (
	teacherID   = "0190c8a0-0000-7000-8000-00000000000a"
	adminID     = "0190c8a0-0000-7000-8000-00000000000b"
	learnerA    = "0190c8a0-0000-7000-8000-0000000000a1"
	learnerB    = "0190c8a0-0000-7000-8000-0000000000b1"
	learnerC    = "0190c8a0-0000-7000-8000-0000000000c1"
	unknownID   = "0190c8a0-0000-7000-8000-000000000000"
	groupInTest = "lesson-service-group"
)

var as = servicetest.As

var (
	teacher = as(teacherID, auth.RoleTeacher)
	admin   = as(adminID, auth.RoleAdmin)
	alice   = as(learnerA, auth.RoleLearner)
	bob     = as(learnerB, auth.RoleLearner)
	carol   = as(learnerC, auth.RoleLearner)
)

// slowClock makes the service's clock take 30 ms until restore is called;
// handlers read it inside their transactions, so concurrent calls overlap there.
func slowClock(s *Service) (restore func()) {
	real := s.now
	s.now = func() time.Time {
		time.Sleep(30 * time.Millisecond)
		return real()
	}
	return func() { s.now = real }
}

func kindOf(err error) apperr.Kind { return apperr.KindOf(err) }

// must(call())(t) returns the call's value, failing the test on its error.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func words(terms ...string) []*lessonv1.Word {
	var out []*lessonv1.Word
	for _, term := range terms {
		out = append(out, &lessonv1.Word{Term: term, Translation: "nghĩa của " + term})
	}
	return out
}

// twoExercises: a multiple choice (answer 1) and a translation ("hello").
func twoExercises() []*lessonv1.Exercise {
	return []*lessonv1.Exercise{
		mc("Which one means 'xin chào'?", 1, "goodbye", "hello", "thanks"),
		translate("Xin chào", "hello", "hi"),
	}
}

type course struct {
	id           string
	unit1, unit2 string
	l1, l2, l3   *lessonv1.Lesson // l1, l2 in unit 1; l3 in unit 2
}

// authorCourse has the teacher write a course of two units and three draft lessons.
func authorCourse(t *testing.T, s *Service) course {
	t.Helper()
	c := must(s.CreateCourse(teacher, &lessonv1.CreateCourseRequest{Title: "English", SourceLanguage: "vi", TargetLanguage: "en"}))(t).GetCourse()
	u1 := must(s.CreateUnit(teacher, &lessonv1.CreateUnitRequest{CourseId: c.GetId(), Title: "Greetings"}))(t).GetUnit()
	u2 := must(s.CreateUnit(teacher, &lessonv1.CreateUnitRequest{CourseId: c.GetId(), Title: "Food"}))(t).GetUnit()
	if u1.GetPosition() != 1 || u2.GetPosition() != 2 {
		t.Fatalf("unit positions %d %d", u1.GetPosition(), u2.GetPosition())
	}
	mk := func(unit, title string, ws ...string) *lessonv1.Lesson {
		return must(s.CreateLesson(teacher, &lessonv1.CreateLessonRequest{UnitId: unit, Title: title, Words: words(ws...), Exercises: twoExercises()}))(t).GetLesson()
	}
	return course{id: c.GetId(), unit1: u1.GetId(), unit2: u2.GetId(),
		l1: mk(u1.GetId(), "Hello", "hello", "hi"), l2: mk(u1.GetId(), "Goodbye", "bye"), l3: mk(u2.GetId(), "Apple", "apple")}
}

func publishAll(t *testing.T, s *Service, ls ...*lessonv1.Lesson) {
	t.Helper()
	for _, l := range ls {
		must(s.PublishLesson(teacher, &lessonv1.PublishLessonRequest{LessonId: l.GetId()}))(t)
	}
}

func mcAnswer(i int32) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: i}}
}

func textAnswer(s string) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: s}}
}

func start(t *testing.T, s *Service, ctx context.Context, lessonID string) *lessonv1.Attempt {
	t.Helper()
	return must(s.StartLesson(ctx, &lessonv1.StartLessonRequest{LessonId: lessonID}))(t).GetAttempt()
}

func answer(t *testing.T, s *Service, ctx context.Context, attemptID, exerciseID string, a *lessonv1.Answer) *lessonv1.AnswerResult {
	t.Helper()
	return must(s.AnswerExercise(ctx, &lessonv1.AnswerExerciseRequest{AttemptId: attemptID, ExerciseId: exerciseID, Answer: a}))(t).GetResult()
}

func statuses(t *testing.T, s *Service, ctx context.Context, courseID string) [][]lessonv1.LessonStatus {
	t.Helper()
	resp := must(s.GetCourse(ctx, &lessonv1.GetCourseRequest{CourseId: courseID}))(t)
	var out [][]lessonv1.LessonStatus
	for _, u := range resp.GetUnits() {
		var row []lessonv1.LessonStatus
		for _, l := range u.GetLessons() {
			row = append(row, l.GetStatus())
		}
		out = append(out, row)
	}
	return out
}

type outboxRow = servicetest.OutboxRow

var (
	outboxRows = servicetest.OutboxRows
	rowsOfType = servicetest.OfType
)

const (
	typePublished = "puchi.lesson.v1.LessonPublished"
	typeStarted   = "puchi.lesson.v1.LessonStarted"
	typeAnswered  = "puchi.lesson.v1.ExerciseAnswered"
	typeCompleted = "puchi.lesson.v1.LessonCompleted"
)

var (
	locked     = lessonv1.LessonStatus_LESSON_STATUS_LOCKED
	available  = lessonv1.LessonStatus_LESSON_STATUS_AVAILABLE
	inProgress = lessonv1.LessonStatus_LESSON_STATUS_IN_PROGRESS
	completed  = lessonv1.LessonStatus_LESSON_STATUS_COMPLETED
)

func sameStatuses(got, want [][]lessonv1.LessonStatus) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if len(got[i]) != len(want[i]) {
			return false
		}
		for j := range got[i] {
			if got[i][j] != want[i][j] {
				return false
			}
		}
	}
	return true
}

// TestAuthoringAndLearnerFlow is the storage contract suite of the lesson service:
// it runs on SQLite and, with PUCHI_TEST_POSTGRES_URL, on PostgreSQL.
func TestAuthoringAndLearnerFlow(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s := New(d, Config{})
		c := authorCourse(t, s)

		// Learners cannot author or read answers; teachers cannot import.
		if _, err := s.CreateCourse(alice, &lessonv1.CreateCourseRequest{Title: "x", SourceLanguage: "vi", TargetLanguage: "en"}); kindOf(err) != apperr.KindForbidden {
			t.Fatalf("learner CreateCourse: %v", err)
		}
		if _, err := s.GetLessonContent(alice, &lessonv1.GetLessonContentRequest{LessonId: c.l1.GetId()}); kindOf(err) != apperr.KindForbidden {
			t.Fatalf("learner GetLessonContent: %v", err)
		}
		if _, err := s.PublishLesson(alice, &lessonv1.PublishLessonRequest{LessonId: c.l1.GetId()}); kindOf(err) != apperr.KindForbidden {
			t.Fatalf("learner PublishLesson: %v", err)
		}
		if _, err := s.ImportCourse(teacher, &lessonv1.ImportCourseRequest{Bundle: &lessonv1.CourseBundle{}}); kindOf(err) != apperr.KindForbidden {
			t.Fatalf("teacher ImportCourse: %v", err)
		}
		if _, err := s.ListCourses(context.Background(), &lessonv1.ListCoursesRequest{}); kindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("anonymous ListCourses: %v", err)
		}

		// Drafts are invisible to learners.
		if list := must(s.ListCourses(alice, &lessonv1.ListCoursesRequest{}))(t); len(list.GetCourses()) != 0 {
			t.Fatalf("courses before publication: %v", list)
		}
		if _, err := s.GetCourse(alice, &lessonv1.GetCourseRequest{CourseId: c.id}); reasonOf(err) != "COURSE_NOT_FOUND" {
			t.Fatalf("GetCourse of an unpublished course: %v", err)
		}
		if _, err := s.GetLesson(alice, &lessonv1.GetLessonRequest{LessonId: c.l1.GetId()}); reasonOf(err) != "LESSON_NOT_FOUND" {
			t.Fatalf("GetLesson of a draft: %v", err)
		}
		if _, err := s.StartLesson(alice, &lessonv1.StartLessonRequest{LessonId: c.l1.GetId()}); reasonOf(err) != "LESSON_NOT_FOUND" {
			t.Fatalf("StartLesson of a draft: %v", err)
		}

		publishAll(t, s, c.l1, c.l2, c.l3, c.l1) // the second publication of l1 changes nothing
		content := must(s.GetLessonContent(teacher, &lessonv1.GetLessonContentRequest{LessonId: c.l1.GetId()}))(t).GetLesson()
		if content.GetState() != lessonv1.PublicationState_PUBLICATION_STATE_PUBLISHED || content.GetPublishedAt() == nil ||
			content.GetXpReward() != DefaultXPReward || len(content.GetWords()) != 2 || len(content.GetExercises()) != 2 {
			t.Fatalf("content: %v", content)
		}
		ex1, ex2 := content.GetExercises()[0].GetId(), content.GetExercises()[1].GetId()

		// The learner's view: counts, statuses in order, no answers.
		list := must(s.ListCourses(alice, &lessonv1.ListCoursesRequest{}))(t)
		if len(list.GetCourses()) != 1 || list.GetCourses()[0].GetLessonCount() != 3 || list.GetCourses()[0].GetUnitCount() != 2 ||
			list.GetCourses()[0].GetCompletedLessonCount() != 0 || list.GetNextPageToken() != "" {
			t.Fatalf("ListCourses: %v", list)
		}
		if got := statuses(t, s, alice, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{available, locked}, {locked}}) {
			t.Fatalf("new learner statuses: %v", got)
		}
		view := must(s.GetLesson(alice, &lessonv1.GetLessonRequest{LessonId: c.l1.GetId()}))(t).GetLesson()
		if view.GetStatus() != available || len(view.GetExercises()) != 2 || len(view.GetWords()) != 2 ||
			view.GetExercises()[0].GetMultipleChoice().GetChoices()[1] != "hello" {
			t.Fatalf("GetLesson: %v", view)
		}
		if locked2 := must(s.GetLesson(alice, &lessonv1.GetLessonRequest{LessonId: c.l2.GetId()}))(t).GetLesson(); locked2.GetStatus() != locked {
			t.Fatalf("l2 should be visible but locked: %v", locked2.GetStatus())
		}
		if _, err := s.StartLesson(alice, &lessonv1.StartLessonRequest{LessonId: c.l2.GetId()}); reasonOf(err) != "LESSON_LOCKED" || kindOf(err) != apperr.KindFailedPrecondition {
			t.Fatalf("starting a locked lesson: %v", err)
		}

		// StartLesson is idempotent by request field and by header.
		first := must(s.StartLesson(alice, &lessonv1.StartLessonRequest{LessonId: c.l1.GetId(), IdempotencyKey: "start-1"}))(t).GetAttempt()
		again := must(s.StartLesson(alice, &lessonv1.StartLessonRequest{LessonId: c.l1.GetId(), IdempotencyKey: "start-1"}))(t).GetAttempt()
		hdr := metadata.NewIncomingContext(alice, metadata.Pairs("idempotency-key", "start-1"))
		viaHeader := must(s.StartLesson(hdr, &lessonv1.StartLessonRequest{LessonId: c.l1.GetId()}))(t).GetAttempt()
		if first.GetId() == "" || again.GetId() != first.GetId() || viaHeader.GetId() != first.GetId() || first.GetExerciseCount() != 2 {
			t.Fatalf("idempotent start: %v / %v / %v", first, again, viaHeader)
		}
		att := first.GetId()
		if got := statuses(t, s, alice, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{inProgress, locked}, {locked}}) {
			t.Fatalf("statuses in progress: %v", got)
		}

		// Learner B never learns that A's attempt exists.
		if _, err := s.GetAttempt(bob, &lessonv1.GetAttemptRequest{AttemptId: att}); reasonOf(err) != "ATTEMPT_NOT_FOUND" {
			t.Fatalf("B reads A's attempt: %v", err)
		}
		if _, err := s.AnswerExercise(bob, &lessonv1.AnswerExerciseRequest{AttemptId: att, ExerciseId: ex1, Answer: mcAnswer(1)}); reasonOf(err) != "ATTEMPT_NOT_FOUND" {
			t.Fatalf("B answers in A's attempt: %v", err)
		}
		if _, err := s.CompleteLesson(bob, &lessonv1.CompleteLessonRequest{AttemptId: att}); reasonOf(err) != "ATTEMPT_NOT_FOUND" {
			t.Fatalf("B completes A's attempt: %v", err)
		}
		if _, err := s.GetAttempt(alice, &lessonv1.GetAttemptRequest{AttemptId: unknownID}); reasonOf(err) != "ATTEMPT_NOT_FOUND" {
			t.Fatalf("unknown attempt: %v", err)
		}

		// Answers to another lesson's exercise, or of the wrong kind, are refused by name.
		other := must(s.GetLessonContent(teacher, &lessonv1.GetLessonContentRequest{LessonId: c.l3.GetId()}))(t).GetLesson().GetExercises()[0].GetId()
		_, err := s.AnswerExercise(alice, &lessonv1.AnswerExerciseRequest{AttemptId: att, ExerciseId: other, Answer: mcAnswer(1)})
		if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Field != "exercise_id" || e.Reason != "EXERCISE_NOT_IN_LESSON" {
			t.Fatalf("answer to another lesson's exercise: %v", err)
		}
		if _, err := s.AnswerExercise(alice, &lessonv1.AnswerExerciseRequest{AttemptId: att, ExerciseId: ex1, Answer: textAnswer("hello")}); fieldOf(err) != "answer" {
			t.Fatalf("answer of the wrong kind: %v", err)
		}

		// First answer wrong; a right second answer is graded but does not count.
		r := answer(t, s, alice, att, ex1, mcAnswer(0))
		if r.GetCorrect() || r.GetExpectedAnswer() != "hello" || r.GetExplanation() != "because" || r.GetExerciseId() != ex1 {
			t.Fatalf("wrong answer result: %v", r)
		}
		if r := answer(t, s, alice, att, ex1, mcAnswer(1)); !r.GetCorrect() {
			t.Fatalf("a repeated answer is still graded: %v", r)
		}
		got := must(s.GetAttempt(alice, &lessonv1.GetAttemptRequest{AttemptId: att}))(t).GetAttempt()
		if got.GetAnsweredCount() != 1 || got.GetCorrectCount() != 0 || got.GetExerciseCount() != 2 || len(got.GetResults()) != 1 ||
			got.GetResults()[0].GetCorrect() || got.GetCompletedAt() != nil || got.GetCompletion() != nil {
			t.Fatalf("attempt after answers: %v", got)
		}

		// Four concurrent completions: one awards the XP, the others report already_completed.
		// The clock is read inside the transaction, between reading the attempt and
		// claiming it: slowing it down makes the four transactions overlap for sure.
		restore := slowClock(s)
		results := make([]*lessonv1.CompletionResult, 4)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				resp, err := s.CompleteLesson(alice, &lessonv1.CompleteLessonRequest{AttemptId: att})
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = resp.GetResult()
			})
		}
		wg.Wait()
		restore()
		if t.Failed() {
			t.FailNow()
		}
		fresh, xp := 0, int32(0)
		for _, r := range results {
			xp += r.GetXpAwarded()
			if !r.GetAlreadyCompleted() {
				fresh++
			}
			// ex1 answered wrong first, ex2 never answered: both wrong.
			if r.GetScore() != 0 || r.GetAccuracy() != 0 || r.GetCorrectCount() != 0 || r.GetExerciseCount() != 2 || r.GetCompletedAt() == nil {
				t.Errorf("completion result: %v", r)
			}
		}
		if fresh != 1 || xp != DefaultXPReward {
			t.Fatalf("concurrent completions: %d fresh, %d XP in total; want 1 and %d: %v", fresh, xp, DefaultXPReward, results)
		}
		if _, err := s.AnswerExercise(alice, &lessonv1.AnswerExerciseRequest{AttemptId: att, ExerciseId: ex2, Answer: textAnswer("hello")}); reasonOf(err) != "ATTEMPT_COMPLETED" {
			t.Fatalf("answer after completion: %v", err)
		}
		done := must(s.GetAttempt(alice, &lessonv1.GetAttemptRequest{AttemptId: att}))(t).GetAttempt()
		if done.GetCompletedAt() == nil || done.GetCompletion().GetXpAwarded() != DefaultXPReward {
			t.Fatalf("completed attempt: %v", done)
		}
		if got := statuses(t, s, alice, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{completed, available}, {locked}}) {
			t.Fatalf("statuses after completion: %v", got)
		}
		if got := statuses(t, s, bob, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{available, locked}, {locked}}) {
			t.Fatalf("B's statuses are B's own: %v", got)
		}

		// Taking the lesson again: a perfect score, but no XP the second time.
		again2 := start(t, s, alice, c.l1.GetId())
		answer(t, s, alice, again2.GetId(), ex1, mcAnswer(1))
		answer(t, s, alice, again2.GetId(), ex2, textAnswer("  Hello! "))
		res := must(s.CompleteLesson(alice, &lessonv1.CompleteLessonRequest{AttemptId: again2.GetId()}))(t).GetResult()
		if res.GetScore() != 100 || res.GetAccuracy() != 1 || res.GetXpAwarded() != 0 || res.GetAlreadyCompleted() {
			t.Fatalf("repeat completion: %v", res)
		}
		if n := must(s.ListCourses(alice, &lessonv1.ListCoursesRequest{}))(t).GetCourses()[0].GetCompletedLessonCount(); n != 1 {
			t.Fatalf("completed lesson count %d, want 1", n)
		}

		// Archiving hides the lesson from learners, and unlocks by course order again.
		must(s.ArchiveLesson(teacher, &lessonv1.ArchiveLessonRequest{LessonId: c.l2.GetId()}))(t)
		if _, err := s.GetLesson(alice, &lessonv1.GetLessonRequest{LessonId: c.l2.GetId()}); reasonOf(err) != "LESSON_NOT_FOUND" {
			t.Fatalf("archived lesson: %v", err)
		}
		if got := statuses(t, s, alice, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{completed}, {available}}) {
			t.Fatalf("statuses after archiving l2: %v", got)
		}

		// Events: each keyed by the learner (LessonPublished by the lesson), in order.
		rows := outboxRows(t, d)
		pub := rowsOfType(rows, typePublished)
		if len(pub) != 3 {
			t.Fatalf("%d LessonPublished, want 3 (republishing publishes nothing)", len(pub))
		}
		for i, l := range []*lessonv1.Lesson{c.l1, c.l2, c.l3} {
			var ev lessonv1.LessonPublished
			if err := proto.Unmarshal(pub[i].Value, &ev); err != nil || pub[i].Topic != kafka.TopicLessonEvents || pub[i].Key != l.GetId() ||
				ev.GetLessonId() != l.GetId() || ev.GetCourseId() != c.id || ev.GetUnitId() != l.GetUnitId() || ev.GetTitle() != l.GetTitle() ||
				ev.GetPosition() != l.GetPosition() || ev.GetPublishedAt() == nil {
				t.Errorf("LessonPublished %d: %+v %v", i, pub[i], &ev)
			}
		}
		started := rowsOfType(rows, typeStarted)
		answered := rowsOfType(rows, typeAnswered)
		done2 := rowsOfType(rows, typeCompleted)
		if len(started) != 2 || len(answered) != 3 || len(done2) != 2 {
			t.Fatalf("learner events: %d started (want 2), %d answered (want 3: first answers only), %d completed (want 2: one per attempt)",
				len(started), len(answered), len(done2))
		}
		for _, r := range append(append(append([]outboxRow{}, started...), answered...), done2...) {
			if r.Key != learnerA || r.Subject != learnerA {
				t.Errorf("learner event %s keyed %q subject %q, want %s", r.Type, r.Key, r.Subject, learnerA)
			}
		}
		for _, r := range append(append([]outboxRow{}, started...), answered...) {
			if r.Topic != kafka.TopicUserLearningEvents {
				t.Errorf("%s on %s", r.Type, r.Topic)
			}
		}
		var ans lessonv1.ExerciseAnswered
		if err := proto.Unmarshal(answered[0].Value, &ans); err != nil || ans.GetExerciseId() != ex1 || ans.GetCorrect() || ans.GetAttemptId() != att ||
			ans.GetLessonId() != c.l1.GetId() || ans.GetUserId() != learnerA || ans.GetAnsweredAt() == nil {
			t.Errorf("ExerciseAnswered: %v %v", &ans, err)
		}
		var st lessonv1.LessonStarted
		if err := proto.Unmarshal(started[0].Value, &st); err != nil || st.GetAttemptId() != att || st.GetLessonId() != c.l1.GetId() || st.GetUserId() != learnerA || st.GetStartedAt() == nil {
			t.Errorf("LessonStarted: %v %v", &st, err)
		}
		want := []struct {
			attempt      string
			xp           int32
			first        bool
			score, right int32
		}{{att, DefaultXPReward, true, 0, 0}, {again2.GetId(), 0, false, 100, 2}}
		for i, w := range want {
			var ev lessonv1.LessonCompleted
			if err := proto.Unmarshal(done2[i].Value, &ev); err != nil || done2[i].Topic != kafka.TopicLessonEvents {
				t.Fatalf("LessonCompleted %d: %v on %s", i, err, done2[i].Topic)
			}
			if ev.GetUserId() != learnerA || ev.GetAttemptId() != w.attempt || ev.GetLessonId() != c.l1.GetId() || ev.GetUnitId() != c.unit1 ||
				ev.GetCourseId() != c.id || ev.GetXpReward() != w.xp || ev.GetFirstCompletion() != w.first || ev.GetScore() != w.score ||
				ev.GetCorrectCount() != w.right || ev.GetExerciseCount() != 2 || ev.GetCompletedAt() == nil ||
				len(ev.GetWords()) != 2 || ev.GetWords()[0].GetTerm() != "hello" || ev.GetWords()[0].GetTranslation() == "" {
				t.Errorf("LessonCompleted %d: %v", i, &ev)
			}
		}
	})
}

// Several attempts at one lesson completed at once: the lesson's XP is awarded by
// exactly one of them (the completions primary key decides).
func TestConcurrentAttemptsAwardOnce(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s := New(d, Config{})
		c := authorCourse(t, s)
		publishAll(t, s, c.l1)
		var ids []string
		for range 4 {
			ids = append(ids, start(t, s, carol, c.l1.GetId()).GetId())
		}
		defer slowClock(s)()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var xp, firsts int32
		for _, id := range ids {
			wg.Go(func() {
				resp, err := s.CompleteLesson(carol, &lessonv1.CompleteLessonRequest{AttemptId: id})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				xp += resp.GetResult().GetXpAwarded()
				if resp.GetResult().GetAlreadyCompleted() {
					t.Errorf("attempt %s was completed once only", id)
				}
			})
		}
		wg.Wait()
		for _, r := range rowsOfType(outboxRows(t, d), typeCompleted) {
			var ev lessonv1.LessonCompleted
			if err := proto.Unmarshal(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.GetFirstCompletion() {
				firsts++
			}
		}
		if xp != DefaultXPReward || firsts != 1 {
			t.Fatalf("XP awarded %d (want %d), first completions %d (want 1)", xp, DefaultXPReward, firsts)
		}
	})
}

func TestUpdatesAndValidation(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s := New(d, Config{})
		c := authorCourse(t, s)

		// Unknown parents are not found; domain checks name the field.
		if _, err := s.CreateUnit(teacher, &lessonv1.CreateUnitRequest{CourseId: unknownID, Title: "x"}); reasonOf(err) != "COURSE_NOT_FOUND" {
			t.Fatalf("unit in unknown course: %v", err)
		}
		if _, err := s.CreateLesson(teacher, &lessonv1.CreateLessonRequest{UnitId: unknownID, Title: "x"}); reasonOf(err) != "UNIT_NOT_FOUND" {
			t.Fatalf("lesson in unknown unit: %v", err)
		}
		if _, err := s.CreateLesson(teacher, &lessonv1.CreateLessonRequest{UnitId: c.unit1, Title: "x", Words: words("cat", "Cat")}); fieldOf(err) != "words[1].term" {
			t.Fatalf("duplicate word: %v", err)
		}
		bad := []*lessonv1.Exercise{translate("ok", "ok"), mc("q", 3, "a", "b")}
		if _, err := s.CreateLesson(teacher, &lessonv1.CreateLessonRequest{UnitId: c.unit1, Title: "x", Exercises: bad}); fieldOf(err) != "exercises[1].multiple_choice.correct_index" {
			t.Fatalf("bad exercise: %v", err)
		}
		if _, err := s.CreateCourse(teacher, &lessonv1.CreateCourseRequest{Title: "x", SourceLanguage: "en", TargetLanguage: "en"}); fieldOf(err) != "target_language" {
			t.Fatalf("same languages: %v", err)
		}

		// A draft lesson without exercises cannot be published.
		empty := must(s.CreateLesson(teacher, &lessonv1.CreateLessonRequest{UnitId: c.unit2, Title: "Empty"}))(t).GetLesson()
		if _, err := s.PublishLesson(teacher, &lessonv1.PublishLessonRequest{LessonId: empty.GetId()}); reasonOf(err) != "LESSON_HAS_NO_EXERCISES" {
			t.Fatalf("publish empty: %v", err)
		}

		// CreateCourse is idempotent by key.
		k1 := must(s.CreateCourse(teacher, &lessonv1.CreateCourseRequest{Title: "Dup", SourceLanguage: "vi", TargetLanguage: "en", IdempotencyKey: "c-1"}))(t)
		k2 := must(s.CreateCourse(teacher, &lessonv1.CreateCourseRequest{Title: "Dup", SourceLanguage: "vi", TargetLanguage: "en", IdempotencyKey: "c-1"}))(t)
		if k1.GetCourse().GetId() != k2.GetCourse().GetId() {
			t.Fatal("CreateCourse with one key created two courses")
		}

		// UpdateLesson keeps the ids of exercises sent back, refuses foreign ones.
		l1 := must(s.GetLessonContent(teacher, &lessonv1.GetLessonContentRequest{LessonId: c.l1.GetId()}))(t).GetLesson()
		keep := proto.Clone(l1.GetExercises()[1]).(*lessonv1.Exercise)
		keep.GetTranslate().AcceptedAnswers = []string{"hello there"}
		title, pos := "Hello!", int32(2)
		upd := must(s.UpdateLesson(teacher, &lessonv1.UpdateLessonRequest{LessonId: l1.GetId(), Title: &title, Position: &pos,
			ClearWords: true, Exercises: []*lessonv1.Exercise{keep, mc("new", 0, "x", "y")}}))(t).GetLesson()
		if upd.GetTitle() != title || upd.GetPosition() != 2 || len(upd.GetWords()) != 0 || len(upd.GetExercises()) != 2 ||
			upd.GetExercises()[0].GetId() != keep.GetId() || upd.GetExercises()[0].GetPosition() != 1 ||
			upd.GetExercises()[1].GetId() == l1.GetExercises()[0].GetId() {
			t.Fatalf("updated lesson: %v", upd)
		}
		l2 := must(s.GetLessonContent(teacher, &lessonv1.GetLessonContentRequest{LessonId: c.l2.GetId()}))(t).GetLesson()
		if l2.GetPosition() != 1 {
			t.Fatalf("l2 should have moved up to 1, is at %d", l2.GetPosition())
		}
		_, err := s.UpdateLesson(teacher, &lessonv1.UpdateLessonRequest{LessonId: l1.GetId(), Exercises: []*lessonv1.Exercise{l2.GetExercises()[0]}})
		if fieldOf(err) != "exercises[0].id" {
			t.Fatalf("foreign exercise id: %v", err)
		}
		if _, err := s.UpdateLesson(teacher, &lessonv1.UpdateLessonRequest{LessonId: l1.GetId(), ClearWords: true, Words: words("x")}); fieldOf(err) != "words" {
			t.Fatalf("clear_words with words: %v", err)
		}

		// UpdateUnit moves units and shifts the others.
		one := int32(1)
		u2 := must(s.UpdateUnit(teacher, &lessonv1.UpdateUnitRequest{UnitId: c.unit2, Position: &one}))(t).GetUnit()
		if u2.GetPosition() != 1 {
			t.Fatalf("unit 2 moved to %d", u2.GetPosition())
		}
		u1, err := s.store.UnitByID(context.Background(), d, c.unit1)
		if err != nil || u1.Position != 2 {
			t.Fatalf("unit 1 at %d (%v), want 2", u1.Position, err)
		}
		newTitle := "Greetings 2"
		if u := must(s.UpdateCourse(teacher, &lessonv1.UpdateCourseRequest{CourseId: c.id, Title: &newTitle}))(t).GetCourse(); u.GetTitle() != newTitle {
			t.Fatalf("UpdateCourse: %v", u)
		}
		if _, err := s.UpdateCourse(teacher, &lessonv1.UpdateCourseRequest{CourseId: unknownID, Title: &newTitle}); reasonOf(err) != "COURSE_NOT_FOUND" {
			t.Fatalf("update unknown course: %v", err)
		}
	})
}

func bundle(lessonKeys ...[]string) *lessonv1.CourseBundle {
	b := &lessonv1.CourseBundle{Slug: "en-for-vi", Title: "English for Vietnamese speakers", SourceLanguage: "vi", TargetLanguage: "en"}
	for i, keys := range lessonKeys {
		u := &lessonv1.UnitBundle{Key: []string{"greetings", "food", "travel"}[i], Title: "Unit"}
		for _, k := range keys {
			u.Lessons = append(u.Lessons, &lessonv1.LessonBundle{Key: k, Title: "Lesson " + k, XpReward: 15, Words: words(k), Exercises: twoExercises()})
		}
		b.Units = append(b.Units, u)
	}
	return b
}

func TestImportCourse(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s := New(d, Config{})
		first := must(s.ImportCourse(admin, &lessonv1.ImportCourseRequest{Bundle: bundle([]string{"hello", "bye"}, []string{"apple"}), Publish: true}))(t)
		if !first.GetCreated() || first.GetCourse().GetSlug() != "en-for-vi" || len(first.GetUnitIds()) != 2 || len(first.GetLessonIds()) != 3 {
			t.Fatalf("first import: %v", first)
		}
		if n := len(rowsOfType(outboxRows(t, d), typePublished)); n != 3 {
			t.Fatalf("%d LessonPublished after the first import, want 3", n)
		}
		hello := must(s.GetLessonContent(admin, &lessonv1.GetLessonContentRequest{LessonId: first.GetLessonIds()["hello"]}))(t).GetLesson()
		if hello.GetXpReward() != 15 || hello.GetState() != lessonv1.PublicationState_PUBLICATION_STATE_PUBLISHED || hello.GetPosition() != 1 {
			t.Fatalf("imported lesson: %v", hello)
		}
		if got := statuses(t, s, alice, first.GetCourse().GetId()); !sameStatuses(got, [][]lessonv1.LessonStatus{{available, locked}, {locked}}) {
			t.Fatalf("statuses of the imported course: %v", got)
		}

		// Re-import: "bye" is gone, "tea" is new, "hello" moves behind "apple" in unit food.
		b := bundle([]string{"apple", "hello"}, []string{"tea"})
		b.Units[0].Lessons[1].Exercises = b.Units[0].Lessons[1].Exercises[:1]
		second := must(s.ImportCourse(admin, &lessonv1.ImportCourseRequest{Bundle: b, Publish: true}))(t)
		if second.GetCreated() || second.GetCourse().GetId() != first.GetCourse().GetId() || second.GetArchivedLessonCount() != 1 ||
			second.GetLessonIds()["hello"] != first.GetLessonIds()["hello"] || second.GetLessonIds()["apple"] != first.GetLessonIds()["apple"] ||
			second.GetUnitIds()["greetings"] != first.GetUnitIds()["greetings"] {
			t.Fatalf("re-import: %v (first %v)", second, first)
		}
		hello2 := must(s.GetLessonContent(admin, &lessonv1.GetLessonContentRequest{LessonId: second.GetLessonIds()["hello"]}))(t).GetLesson()
		if hello2.GetPosition() != 2 || len(hello2.GetExercises()) != 1 || hello2.GetExercises()[0].GetId() != hello.GetExercises()[0].GetId() {
			t.Fatalf("hello after re-import: %v", hello2)
		}
		bye := must(s.GetLessonContent(admin, &lessonv1.GetLessonContentRequest{LessonId: first.GetLessonIds()["bye"]}))(t).GetLesson()
		if bye.GetState() != lessonv1.PublicationState_PUBLICATION_STATE_ARCHIVED {
			t.Fatalf("bye should be archived: %v", bye.GetState())
		}
		if n := len(rowsOfType(outboxRows(t, d), typePublished)); n != 4 {
			t.Fatalf("%d LessonPublished after the re-import, want 4 (only tea is new)", n)
		}

		// Importing without publish leaves new lessons as drafts.
		b3 := bundle([]string{"apple", "hello"}, []string{"tea", "rice"})
		third := must(s.ImportCourse(admin, &lessonv1.ImportCourseRequest{Bundle: b3}))(t)
		rice := must(s.GetLessonContent(admin, &lessonv1.GetLessonContentRequest{LessonId: third.GetLessonIds()["rice"]}))(t).GetLesson()
		if rice.GetState() != lessonv1.PublicationState_PUBLICATION_STATE_DRAFT || third.GetArchivedLessonCount() != 0 {
			t.Fatalf("unpublished import: %v, %v", rice.GetState(), third)
		}

		// A bundle repeating a key is refused by name.
		dup := bundle([]string{"a", "a"})
		if _, err := s.ImportCourse(admin, &lessonv1.ImportCourseRequest{Bundle: dup}); fieldOf(err) != "bundle.units[0].lessons[1].key" {
			t.Fatalf("duplicate key: %v", err)
		}
	})
}

// UserDeleted, delivered twice through the router, erases the learner's attempts,
// answers and completions and leaves other learners alone.
func TestUserDeletedErasesLearner(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s := New(d, Config{})
		c := authorCourse(t, s)
		publishAll(t, s, c.l1)
		exID := must(s.GetLessonContent(teacher, &lessonv1.GetLessonContentRequest{LessonId: c.l1.GetId()}))(t).GetLesson().GetExercises()[0].GetId()
		for _, who := range []context.Context{alice, bob} {
			a := start(t, s, who, c.l1.GetId())
			answer(t, s, who, a.GetId(), exID, mcAnswer(1))
			must(s.CompleteLesson(who, &lessonv1.CompleteLessonRequest{AttemptId: a.GetId()}))(t)
		}
		must(s.StartLesson(alice, &lessonv1.StartLessonRequest{LessonId: c.l1.GetId(), IdempotencyKey: "k"}))(t)

		router := kafka.NewRouter()
		s.registerHandlers(router, groupInTest)
		msg := servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicUserEvents, Key: learnerA, Source: "user", Subject: learnerA,
			Payload: &userv1.UserDeleted{UserId: learnerA, DeletedAt: timestamppb.Now()}})
		servicetest.Deliver(t, router, msg, 2)
		count := func(q string, args ...any) int { return servicetest.Count(t, d, q, args...) }
		for who, want := range map[string]int{learnerA: 0, learnerB: 1} {
			if n := count(`SELECT COUNT(*) FROM completions WHERE user_id = ?`, who); n != want {
				t.Errorf("%s: %d completions, want %d", who, n, want)
			}
			if n := count(`SELECT COUNT(*) FROM attempts WHERE user_id = ?`, who); n != want {
				t.Errorf("%s: %d attempts, want %d", who, n, want)
			}
			if n := count(`SELECT COUNT(*) FROM attempt_answers a JOIN attempts t ON t.id = a.attempt_id WHERE t.user_id = ?`, who); n != want {
				t.Errorf("%s: %d answers, want %d", who, n, want)
			}
		}
		if n := count(`SELECT COUNT(*) FROM attempt_answers`); n != 1 {
			t.Errorf("%d answers left, want B's 1", n)
		}
		if n := count(`SELECT COUNT(*) FROM idempotency_keys WHERE user_id = ?`, learnerA); n != 0 {
			t.Errorf("%d stored responses of the deleted learner", n)
		}
		// The learner's status starts over (a new account would have another id anyway).
		if got := statuses(t, s, alice, c.id); !sameStatuses(got, [][]lessonv1.LessonStatus{{available}}) {
			t.Errorf("statuses after erasure: %v", got)
		}

		// A UserDeleted without user id can never succeed: it goes to the DLQ.
		bad, _ := kafka.NewEvent(kafka.EventSpec{Topic: kafka.TopicUserEvents, Source: "user", Payload: &userv1.UserDeleted{}})
		if err := router.Handle(ctx, &bad); !kafka.IsPermanent(err) {
			t.Errorf("UserDeleted without id: %v, want a permanent error", err)
		}
	})
}

func TestSpec(t *testing.T) {
	spec := Spec(Config{})
	if spec.Name != "lesson" || spec.GRPCPort != 50052 || spec.AdminPort != 8002 || len(spec.PublicMethods) != 0 ||
		len(spec.Topics) != 1 || spec.Topics[0] != kafka.TopicUserEvents || spec.Migrations == nil || spec.Register == nil {
		t.Fatalf("spec: %+v", spec)
	}
}

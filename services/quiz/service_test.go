package quiz

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

// fixture is the service on one database, its event router and a clock.
type fixture struct {
	s      *Service
	d      *db.DB
	router *kafka.Router
	clock  *servicetest.Clock
}

func newFixture(t *testing.T, d *db.DB) *fixture {
	t.Helper()
	c := servicetest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	s := New(d, Config{Now: c.Now})
	r := kafka.NewRouter()
	s.registerHandlers(r, Name+"-service-group")
	return &fixture{s: s, d: d, router: r, clock: c}
}

func id() string { return uuid.Must(uuid.NewV7()).String() }

var as = servicetest.As

// deliver builds an event the way its producer does and hands it to the
// router twice, as a redelivering consumer would.
func (f *fixture) deliver(t *testing.T, topic, userID string, payload proto.Message) {
	t.Helper()
	m := servicetest.Event(t, kafka.EventSpec{Topic: topic, Key: userID, Subject: userID, Payload: payload})
	servicetest.Deliver(t, f.router, m, 2)
}

func (f *fixture) completeLesson(t *testing.T, userID, courseID, unitID, lessonID string) {
	t.Helper()
	f.deliver(t, kafka.TopicLessonEvents, userID, &lessonv1.LessonCompleted{
		UserId: userID, AttemptId: id(), LessonId: lessonID, UnitId: unitID, CourseId: courseID, Score: 100,
		Accuracy: 1, XpReward: 10, CompletedAt: timestamppb.New(f.clock.Now()), FirstCompletion: true,
	})
}

var (
	count      = servicetest.Count
	outboxRows = servicetest.OutboxRows
)

// threeQuestions: a multiple choice (answer 0), a translation ("thank you")
// and a fill-in-the-blank ("am").
func threeQuestions() []*lessonv1.Exercise {
	return []*lessonv1.Exercise{
		{Explanation: "hello = xin chào", Kind: &lessonv1.Exercise_MultipleChoice{MultipleChoice: &lessonv1.MultipleChoice{
			Prompt: "Xin chào?", Choices: []string{"hello", "goodbye"}, CorrectIndex: 0}}},
		{Kind: &lessonv1.Exercise_Translate{Translate: &lessonv1.Translate{Prompt: "Cảm ơn", AcceptedAnswers: []string{"thank you", "thanks"}}}},
		{Kind: &lessonv1.Exercise_FillBlank{FillBlank: &lessonv1.FillBlank{SentenceWithBlank: "I ___ Lan.", AcceptedAnswers: []string{"am"}}}},
	}
}

// allRight answers every question of a started attempt correctly.
func allRight(a *quizv1.QuizAttempt) []*quizv1.QuestionAnswer {
	qs := a.GetQuestions()
	return []*quizv1.QuestionAnswer{
		{QuestionId: qs[0].GetId(), Answer: choice(0)},
		{QuestionId: qs[1].GetId(), Answer: text("Thank you!")},
		{QuestionId: qs[2].GetId(), Answer: text("am")},
	}
}

func summaryOf(t *testing.T, s *Service, ctx context.Context, quizID string) *quizv1.QuizSummary {
	t.Helper()
	resp, err := s.ListQuizzes(ctx, &quizv1.ListQuizzesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range resp.GetQuizzes() {
		if q.GetId() == quizID {
			return q
		}
	}
	t.Fatalf("quiz %s not listed", quizID)
	return nil
}

// TestQuizLifecycle is the storage and service contract suite: it runs on
// SQLite and, with PUCHI_TEST_POSTGRES_URL, on PostgreSQL.
func TestQuizLifecycle(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		s := f.s
		course, unit, l1, l2 := id(), id(), id(), id()
		userA, userB := id(), id()
		teacher, learnerA, learnerB := as(id(), auth.RoleTeacher), as(userA, auth.RoleLearner), as(userB, auth.RoleLearner)

		create := &quizv1.CreateQuizRequest{
			CourseId: course, UnitId: unit, LessonId: l1, Title: "Greetings check", Questions: threeQuestions(),
			CoveredLessonIds: []string{l1, l2},
		}
		// Learners cannot author quizzes.
		if _, err := s.CreateQuiz(learnerA, create); apperr.KindOf(err) != apperr.KindForbidden {
			t.Fatalf("learner creates a quiz: %v", err)
		}
		created, err := s.CreateQuiz(teacher, create)
		if err != nil {
			t.Fatal(err)
		}
		qz := created.GetQuiz()
		if qz.GetTimeLimitSeconds() != 300 || qz.GetMaxAttempts() != 3 || qz.GetPassingScorePercent() != 70 ||
			len(qz.GetQuestions()) != 3 || qz.GetQuestions()[2].GetPosition() != 3 || qz.GetQuestions()[0].GetId() == "" {
			t.Fatalf("created quiz: %v", qz)
		}

		// Locked until both covered lessons are completed.
		if st := summaryOf(t, s, learnerA, qz.GetId()); st.GetStatus() != quizv1.QuizStatus_QUIZ_STATUS_LOCKED || st.GetQuestionCount() != 3 {
			t.Fatalf("before any lesson: %v", st)
		}
		if _, err := s.StartQuiz(learnerA, &quizv1.StartQuizRequest{QuizId: qz.GetId()}); reasonOf(err) != "QUIZ_LOCKED" {
			t.Fatalf("start a locked quiz: %v", err)
		}
		f.completeLesson(t, userA, course, unit, l1) // delivered twice
		if st := summaryOf(t, s, learnerA, qz.GetId()); st.GetStatus() != quizv1.QuizStatus_QUIZ_STATUS_LOCKED {
			t.Fatalf("after one of two lessons: %v", st)
		}
		f.completeLesson(t, userA, course, unit, l2)
		if n := count(t, d, `SELECT count(*) FROM completed_lessons WHERE user_id = ?`, userA); n != 2 {
			t.Fatalf("completed lessons: %d, want 2", n)
		}
		if st := summaryOf(t, s, learnerA, qz.GetId()); st.GetStatus() != quizv1.QuizStatus_QUIZ_STATUS_UNLOCKED {
			t.Fatalf("after both lessons: %v", st)
		}
		if st := summaryOf(t, s, learnerB, qz.GetId()); st.GetStatus() != quizv1.QuizStatus_QUIZ_STATUS_LOCKED {
			t.Fatalf("A's lessons unlock nothing for B: %v", st)
		}

		// Start: questions without answers, a deadline; retries return the same attempt.
		start, err := s.StartQuiz(learnerA, &quizv1.StartQuizRequest{QuizId: qz.GetId(), IdempotencyKey: "start-1"})
		if err != nil {
			t.Fatal(err)
		}
		a1 := start.GetAttempt()
		if a1.GetAttemptNumber() != 1 || len(a1.GetQuestions()) != 3 || a1.GetQuestions()[0].GetMultipleChoice().GetPrompt() != "Xin chào?" ||
			!a1.GetDeadline().AsTime().Equal(f.clock.Now().Add(300*time.Second)) || a1.GetResult() != nil {
			t.Fatalf("attempt: %v", a1)
		}
		for _, req := range []*quizv1.StartQuizRequest{{QuizId: qz.GetId(), IdempotencyKey: "start-1"}, {QuizId: qz.GetId()}} {
			again, err := s.StartQuiz(learnerA, req)
			if err != nil || again.GetAttempt().GetId() != a1.GetId() {
				t.Fatalf("start again (%v): %v %v", req, again, err)
			}
		}
		if st := summaryOf(t, s, learnerA, qz.GetId()); st.GetOpenAttemptId() != a1.GetId() || st.GetAttemptsUsed() != 1 {
			t.Fatalf("open attempt: %v", st)
		}

		// B can neither read nor submit A's attempt.
		if _, err := s.GetQuizAttempt(learnerB, &quizv1.GetQuizAttemptRequest{AttemptId: a1.GetId()}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("B reads A's attempt: %v", err)
		}
		if _, err := s.SubmitQuiz(learnerB, &quizv1.SubmitQuizRequest{AttemptId: a1.GetId(), Answers: allRight(a1)}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("B submits A's attempt: %v", err)
		}

		// An answer to a question of no quiz is refused naming it; nothing is recorded.
		stray := id()
		_, err = s.SubmitQuiz(learnerA, &quizv1.SubmitQuizRequest{AttemptId: a1.GetId(), Answers: []*quizv1.QuestionAnswer{
			{QuestionId: a1.GetQuestions()[0].GetId(), Answer: choice(0)}, {QuestionId: stray, Answer: choice(1)}}})
		if e, ok := apperr.As(err); !ok || e.Kind != apperr.KindInvalid || e.Field != "answers[1].question_id" || !strings.Contains(e.Message, stray) {
			t.Fatalf("stray answer: %v", err)
		}

		// First submission: one right of three, failed.
		sub1 := &quizv1.SubmitQuizRequest{AttemptId: a1.GetId(), IdempotencyKey: "submit-1", Answers: []*quizv1.QuestionAnswer{
			{QuestionId: a1.GetQuestions()[0].GetId(), Answer: choice(0)},
			{QuestionId: a1.GetQuestions()[1].GetId(), Answer: text("hello")},
		}}
		f.clock.Advance(time.Minute)
		r1, err := s.SubmitQuiz(learnerA, sub1)
		if err != nil {
			t.Fatal(err)
		}
		res := r1.GetResult()
		if res.GetScorePercent() != 33 || res.GetPassed() || res.GetCorrectCount() != 1 || res.GetQuestionCount() != 3 ||
			res.GetAttemptsLeft() != 2 || len(res.GetFeedback()) != 3 {
			t.Fatalf("result 1: %v", res)
		}
		fb := res.GetFeedback()
		if !fb[0].GetCorrect() || fb[0].GetExplanation() != "hello = xin chào" || fb[1].GetCorrect() || fb[1].GetExpectedAnswer() != "thank you" ||
			!fb[1].GetAnswered() || fb[2].GetAnswered() || fb[2].GetCorrect() || fb[2].GetExpectedAnswer() != "am" {
			t.Fatalf("feedback: %v", fb)
		}
		// A retry with the same key returns the first result; another submission is refused.
		retry, err := s.SubmitQuiz(learnerA, sub1)
		if err != nil || !proto.Equal(retry.GetResult(), res) {
			t.Fatalf("retry with the same key: %v %v", retry, err)
		}
		sub1.IdempotencyKey = "submit-1b"
		if _, err := s.SubmitQuiz(learnerA, sub1); reasonOf(err) != "ALREADY_SUBMITTED" || apperr.KindOf(err) != apperr.KindFailedPrecondition {
			t.Fatalf("second submission: %v", err)
		}
		got, err := s.GetQuizAttempt(learnerA, &quizv1.GetQuizAttemptRequest{AttemptId: a1.GetId()})
		if err != nil || got.GetAttempt().GetResult().GetScorePercent() != 33 {
			t.Fatalf("GetQuizAttempt after submit: %v %v", got, err)
		}

		// Second attempt: submitted too late.
		a2, err := s.StartQuiz(learnerA, &quizv1.StartQuizRequest{QuizId: qz.GetId()})
		if err != nil || a2.GetAttempt().GetAttemptNumber() != 2 {
			t.Fatalf("second attempt: %v %v", a2, err)
		}
		f.clock.Advance(300*time.Second + time.Millisecond)
		_, err = s.SubmitQuiz(learnerA, &quizv1.SubmitQuizRequest{AttemptId: a2.GetAttempt().GetId(), Answers: allRight(a2.GetAttempt())})
		if reasonOf(err) != "QUIZ_EXPIRED" || apperr.KindOf(err) != apperr.KindFailedPrecondition {
			t.Fatalf("late submission: %v", err)
		}
		if st := summaryOf(t, s, learnerA, qz.GetId()); st.GetOpenAttemptId() != "" || st.GetAttemptsUsed() != 2 {
			t.Fatalf("an expired attempt is not open: %v", st)
		}

		// Third attempt: perfect, the first pass.
		a3, err := s.StartQuiz(learnerA, &quizv1.StartQuizRequest{QuizId: qz.GetId()})
		if err != nil || a3.GetAttempt().GetAttemptNumber() != 3 || a3.GetAttempt().GetId() == a2.GetAttempt().GetId() {
			t.Fatalf("third attempt: %v %v", a3, err)
		}
		f.clock.Advance(2 * time.Minute)
		r3, err := s.SubmitQuiz(learnerA, &quizv1.SubmitQuizRequest{AttemptId: a3.GetAttempt().GetId(), Answers: allRight(a3.GetAttempt())})
		if err != nil || !r3.GetResult().GetPassed() || r3.GetResult().GetScorePercent() != 100 || r3.GetResult().GetAttemptsLeft() != 0 {
			t.Fatalf("third submission: %v %v", r3, err)
		}
		submittedAt := f.clock.Now()

		// No attempts left; the list shows the pass.
		if _, err := s.StartQuiz(learnerA, &quizv1.StartQuizRequest{QuizId: qz.GetId()}); reasonOf(err) != "NO_ATTEMPTS_LEFT" {
			t.Fatalf("fourth attempt: %v", err)
		}
		st := summaryOf(t, s, learnerA, qz.GetId())
		if st.GetStatus() != quizv1.QuizStatus_QUIZ_STATUS_PASSED || st.GetAttemptsUsed() != 3 || st.GetBestScorePercent() != 100 {
			t.Fatalf("after passing: %v", st)
		}

		// Events: one per start of a new attempt and per graded submission,
		// keyed and subject-ed by the learner; refusals wrote nothing.
		rows := outboxRows(t, d)
		servicetest.CheckOutbox(t, rows, kafka.TopicQuizEvents, userA, "puchi.quiz.v1.QuizStarted", "puchi.quiz.v1.QuizSubmitted",
			"puchi.quiz.v1.QuizStarted", "puchi.quiz.v1.QuizStarted", "puchi.quiz.v1.QuizSubmitted")
		var started quizv1.QuizStarted
		if err := proto.Unmarshal(rows[0].Value, &started); err != nil || started.GetAttemptId() != a1.GetId() ||
			started.GetAttemptNumber() != 1 || started.GetQuizId() != qz.GetId() || started.GetUserId() != userA ||
			!started.GetDeadline().AsTime().Equal(a1.GetDeadline().AsTime()) || started.GetStartedAt() == nil {
			t.Errorf("QuizStarted: %v %v", &started, err)
		}
		var first quizv1.QuizSubmitted
		if err := proto.Unmarshal(rows[1].Value, &first); err != nil || first.GetPassed() || first.GetFirstPass() ||
			first.GetAttemptNumber() != 1 || first.GetScorePercent() != 33 || first.GetPerfect() {
			t.Errorf("first QuizSubmitted: %v %v", &first, err)
		}
		wantLast := &quizv1.QuizSubmitted{
			UserId: userA, AttemptId: a3.GetAttempt().GetId(), QuizId: qz.GetId(), UnitId: unit, ScorePercent: 100,
			Passed: true, CorrectCount: 3, QuestionCount: 3, Perfect: true, SubmittedAt: timestamppb.New(submittedAt),
			CourseId: course, LessonId: l1, AttemptNumber: 3, FirstPass: true,
		}
		var last quizv1.QuizSubmitted
		if err := proto.Unmarshal(rows[4].Value, &last); err != nil || !proto.Equal(&last, wantLast) {
			t.Errorf("last QuizSubmitted:\n got %v\nwant %v (%v)", &last, wantLast, err)
		}

		// Every LessonCompleted was handled once although delivered twice.
		if n := count(t, d, `SELECT count(*) FROM processed_events`); n != 2 {
			t.Errorf("processed events: %d, want 2", n)
		}
	})
}

// A pass after an earlier pass is not a first pass; a unit quiz with no
// covered lessons is open from the start.
func TestSecondPassIsNotFirstPass(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		user := id()
		learner := as(user, auth.RoleLearner)
		created, err := f.s.CreateQuiz(as(id(), auth.RoleAdmin), &quizv1.CreateQuizRequest{
			CourseId: id(), UnitId: id(), Title: "Unit check", Questions: threeQuestions(), TimeLimitSeconds: 60, MaxAttempts: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if created.GetQuiz().GetCoveredLessonIds() == nil || len(created.GetQuiz().GetCoveredLessonIds()) != 0 {
			t.Fatalf("covered: %v", created.GetQuiz().GetCoveredLessonIds())
		}
		for i := range 2 {
			a, err := f.s.StartQuiz(learner, &quizv1.StartQuizRequest{QuizId: created.GetQuiz().GetId()})
			if err != nil {
				t.Fatalf("start %d: %v", i+1, err)
			}
			if !a.GetAttempt().GetDeadline().AsTime().Equal(f.clock.Now().Add(time.Minute)) {
				t.Fatalf("deadline %v", a.GetAttempt().GetDeadline())
			}
			if _, err := f.s.SubmitQuiz(learner, &quizv1.SubmitQuizRequest{AttemptId: a.GetAttempt().GetId(), Answers: allRight(a.GetAttempt())}); err != nil {
				t.Fatal(err)
			}
		}
		var firsts []bool
		for _, r := range outboxRows(t, d) {
			if r.Type == "puchi.quiz.v1.QuizSubmitted" {
				var ev quizv1.QuizSubmitted
				if err := proto.Unmarshal(r.Value, &ev); err != nil {
					t.Fatal(err)
				}
				firsts = append(firsts, ev.GetFirstPass())
			}
		}
		if len(firsts) != 2 || !firsts[0] || firsts[1] {
			t.Fatalf("first_pass flags: %v, want [true false]", firsts)
		}
	})
}

func TestImportQuizUpsertsByKey(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		admin := as(id(), auth.RoleAdmin)
		course, unit, lesson := id(), id(), id()
		req := &quizv1.ImportQuizRequest{Key: "en-for-vi-greetings", CourseId: course, UnitId: unit, LessonId: lesson,
			Title: "Greetings", Questions: threeQuestions(), PassingScorePercent: 60}
		if _, err := f.s.ImportQuiz(as(id(), auth.RoleTeacher), req); apperr.KindOf(err) != apperr.KindForbidden {
			t.Fatalf("teacher imports: %v", err)
		}
		first, err := f.s.ImportQuiz(admin, req)
		if err != nil || !first.GetCreated() || first.GetQuiz().GetKey() != "en-for-vi-greetings" || first.GetQuiz().GetPassingScorePercent() != 60 {
			t.Fatalf("first import: %v %v", first, err)
		}
		if got := first.GetQuiz().GetCoveredLessonIds(); len(got) != 1 || got[0] != lesson {
			t.Fatalf("a lesson quiz covers its lesson: %v", got)
		}

		// A learner's attempt survives a re-import.
		user := id()
		f.completeLesson(t, user, course, unit, lesson)
		a, err := f.s.StartQuiz(as(user, auth.RoleLearner), &quizv1.StartQuizRequest{QuizId: first.GetQuiz().GetId()})
		if err != nil {
			t.Fatal(err)
		}

		f.clock.Advance(time.Hour)
		req.Title, req.Questions = "Greetings, again", threeQuestions()[:2]
		second, err := f.s.ImportQuiz(admin, req)
		if err != nil || second.GetCreated() || second.GetQuiz().GetId() != first.GetQuiz().GetId() || second.GetQuiz().GetTitle() != "Greetings, again" {
			t.Fatalf("re-import: %v %v", second, err)
		}
		q1, q2 := first.GetQuiz().GetQuestions(), second.GetQuiz().GetQuestions()
		if len(q2) != 2 || q2[0].GetId() != q1[0].GetId() || q2[1].GetId() != q1[1].GetId() {
			t.Fatalf("question ids must stay position by position: %v vs %v", q1, q2)
		}
		if !second.GetQuiz().GetCreatedAt().AsTime().Equal(first.GetQuiz().GetCreatedAt().AsTime()) ||
			!second.GetQuiz().GetUpdatedAt().AsTime().After(first.GetQuiz().GetCreatedAt().AsTime()) {
			t.Fatalf("timestamps: %v", second.GetQuiz())
		}
		if n := count(t, d, `SELECT count(*) FROM questions WHERE quiz_id = ?`, first.GetQuiz().GetId()); n != 2 {
			t.Fatalf("questions after re-import: %d", n)
		}
		got, err := f.s.GetQuizAttempt(as(user, auth.RoleLearner), &quizv1.GetQuizAttemptRequest{AttemptId: a.GetAttempt().GetId()})
		if err != nil || len(got.GetAttempt().GetQuestions()) != 2 {
			t.Fatalf("attempt after re-import: %v %v", got, err)
		}
		if n := count(t, d, `SELECT count(*) FROM quizzes`); n != 1 {
			t.Fatalf("quizzes: %d", n)
		}
	})
}

func TestUserDeletedErasesTheLearner(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		course, unit, lesson := id(), id(), id()
		created, err := f.s.CreateQuiz(as(id(), auth.RoleTeacher), &quizv1.CreateQuizRequest{
			CourseId: course, UnitId: unit, LessonId: lesson, Title: "Check", Questions: threeQuestions(),
		})
		if err != nil {
			t.Fatal(err)
		}
		gone, stays := id(), id()
		for _, u := range []string{gone, stays} {
			f.completeLesson(t, u, course, unit, lesson)
			if _, err := f.s.StartQuiz(as(u, auth.RoleLearner), &quizv1.StartQuizRequest{QuizId: created.GetQuiz().GetId(), IdempotencyKey: "k"}); err != nil {
				t.Fatal(err)
			}
		}
		f.deliver(t, kafka.TopicUserEvents, gone, &userv1.UserDeleted{UserId: gone, DeletedAt: timestamppb.New(f.clock.Now())})
		for _, table := range []string{"attempts", "completed_lessons", "idempotency_keys"} {
			if n := count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, gone); n != 0 {
				t.Errorf("%s rows of the deleted learner: %d", table, n)
			}
			if n := count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, stays); n != 1 {
				t.Errorf("%s rows of the other learner: %d, want 1", table, n)
			}
		}
		// Without a user id the event can never succeed: dead-letter it.
		m := servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicUserEvents, Payload: &userv1.UserDeleted{}})
		if err := f.router.Handle(context.Background(), &m); !kafka.IsPermanent(err) {
			t.Fatalf("UserDeleted without user id: %v", err)
		}
	})
}

// Concurrent starts of one quiz by one learner make one attempt.
func TestConcurrentStartsMakeOneAttempt(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		created, err := f.s.CreateQuiz(as(id(), auth.RoleTeacher), &quizv1.CreateQuizRequest{
			CourseId: id(), UnitId: id(), Title: "Check", Questions: threeQuestions(),
		})
		if err != nil {
			t.Fatal(err)
		}
		learner := as(id(), auth.RoleLearner)
		var wg sync.WaitGroup
		ids := make([]string, 4)
		for i := range ids {
			wg.Go(func() {
				a, err := f.s.StartQuiz(learner, &quizv1.StartQuizRequest{QuizId: created.GetQuiz().GetId()})
				if err != nil {
					t.Errorf("start: %v", err)
					return
				}
				ids[i] = a.GetAttempt().GetId()
			})
		}
		wg.Wait()
		for _, x := range ids[1:] {
			if x != ids[0] {
				t.Fatalf("attempts %v, want one", ids)
			}
		}
		if n := count(t, d, `SELECT count(*) FROM attempts`); n != 1 {
			t.Fatalf("attempts rows: %d", n)
		}
	})
}

func TestListQuizzesFiltersAndPages(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		f := newFixture(t, d)
		teacher := as(id(), auth.RoleTeacher)
		course, unit := id(), id()
		lessons := []string{id(), id(), id()} // UUIDv7: in creation order
		var want []string
		mk := func(unitID, lessonID, title string) string {
			c, err := f.s.CreateQuiz(teacher, &quizv1.CreateQuizRequest{CourseId: course, UnitId: unitID, LessonId: lessonID, Title: title, Questions: threeQuestions()})
			if err != nil {
				t.Fatal(err)
			}
			return c.GetQuiz().GetId()
		}
		unitQuiz := mk(unit, "", "Unit quiz") // created first, listed last of its unit
		for _, l := range lessons {
			want = append(want, mk(unit, l, "Lesson quiz"))
		}
		want = append(want, unitQuiz)
		mk(id(), "", "Another unit")

		var got []string
		token := ""
		for {
			resp, err := f.s.ListQuizzes(as(id(), auth.RoleLearner), &quizv1.ListQuizzesRequest{UnitId: unit, PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range resp.GetQuizzes() {
				got = append(got, q.GetId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(got) != len(want) {
			t.Fatalf("listed %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("order: got %v, want %v", got, want)
			}
		}
		resp, err := f.s.ListQuizzes(as(id(), auth.RoleLearner), &quizv1.ListQuizzesRequest{LessonId: lessons[1]})
		if err != nil || len(resp.GetQuizzes()) != 1 || resp.GetQuizzes()[0].GetId() != want[1] {
			t.Fatalf("by lesson: %v %v", resp, err)
		}
		if _, err := f.s.ListQuizzes(as(id(), auth.RoleLearner), &quizv1.ListQuizzesRequest{PageToken: "garbage"}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("bad token: %v", err)
		}
	})
}

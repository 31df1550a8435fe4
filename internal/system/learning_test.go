package system_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/services/content"
)

// rest sends a request whose body is the protojson form of in (nil: no body),
// checks the status, and decodes a 2xx answer into out (nil: ignore).
func (m *mesh) rest(t *testing.T, want int, method, path, token string, headers map[string]string, in, out proto.Message) string {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := protojson.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return string(raw)
}

// signUp registers a learner and returns their access token.
func (m *mesh) signUp(t *testing.T, email, username, name string) (token, userID string) {
	t.Helper()
	var reg struct {
		User   userJSON `json:"user"`
		Tokens tokens   `json:"tokens"`
	}
	r := registration(email, username)
	r["display_name"] = name
	m.expect(t, 200, "POST", "/v1/auth/register", "", r, &reg)
	return reg.Tokens.AccessToken, reg.User.ID
}

// answerFor builds the right answer to an authored exercise.
func answerFor(t *testing.T, ex *lessonv1.Exercise) *lessonv1.Answer {
	t.Helper()
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: k.MultipleChoice.GetCorrectIndex()}}
	case *lessonv1.Exercise_Translate:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.Translate.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_FillBlank:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.FillBlank.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_Listen:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: k.Listen.GetAcceptedAnswers()[0]}}
	case *lessonv1.Exercise_MatchPairs:
		return &lessonv1.Answer{Value: &lessonv1.Answer_Pairs{Pairs: &lessonv1.MatchPairsAnswer{Pairs: k.MatchPairs.GetPairs()}}}
	}
	t.Fatalf("exercise %v has no kind", ex)
	return nil
}

// wrongAnswerFor builds a wrong answer of the right kind.
func wrongAnswerFor(ex *lessonv1.Exercise) *lessonv1.Answer {
	if mc := ex.GetMultipleChoice(); mc != nil {
		return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: (mc.GetCorrectIndex() + 1) % int32(len(mc.GetChoices()))}}
	}
	if mp := ex.GetMatchPairs(); mp != nil {
		p := mp.GetPairs()
		swapped := []*lessonv1.Pair{{Left: p[0].GetLeft(), Right: p[1].GetRight()}, {Left: p[1].GetLeft(), Right: p[0].GetRight()}}
		return &lessonv1.Answer{Value: &lessonv1.Answer_Pairs{Pairs: &lessonv1.MatchPairsAnswer{Pairs: append(swapped, p[2:]...)}}}
	}
	return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: "definitely not this"}}
}

// waitProgress polls the learner's progress until cond holds.
func (m *mesh) waitProgress(t *testing.T, token, what string, cond func(*progressv1.Progress) bool) *progressv1.Progress {
	t.Helper()
	var p progressv1.Progress
	start := time.Now()
	waitFor(t, what, func() bool {
		p.Reset()
		m.rest(t, 200, "GET", "/v1/progress/me", token, nil, nil, &p)
		return cond(&p)
	})
	t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
	return &p
}

// TestLearningFlow is the learner's first session on a fresh system, through
// REST only: the demo course, a lesson with right and wrong answers, XP, streak
// and level from events, the lesson's words in the review queue, the unit quiz
// unlocked and passed, a word review, the leaderboard by display name; then
// another learner's attempts at A's data, bad input, and a restart that replays
// nothing twice.
func TestLearningFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	engines := map[string]string{"sqlite": ""}
	if url := os.Getenv("PUCHI_TEST_POSTGRES_URL"); url != "" {
		engines["postgres"] = freshPostgresDatabase(t, url)
	}
	for name, dbURL := range engines {
		t.Run(name, func(t *testing.T) { learningFlow(t, dbURL) })
	}
}

func learningFlow(t *testing.T, dbURL string) {
	demo, err := content.Demo()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	m := boot(t, dataDir, dbURL)
	waitFor(t, "the demo course", m.sys.DemoLoaded)

	tokA, idA := m.signUp(t, "an@example.com", "an_tran", "An Tran")
	tokB, _ := m.signUp(t, "binh@example.com", "binh", "Binh Le")

	// The catalogue.
	var courses lessonv1.ListCoursesResponse
	m.rest(t, 200, "GET", "/v1/courses", tokA, nil, nil, &courses)
	if len(courses.GetCourses()) != 1 {
		t.Fatalf("courses: %v", &courses)
	}
	courseID := courses.GetCourses()[0].GetCourse().GetId()
	var outline lessonv1.GetCourseResponse
	m.rest(t, 200, "GET", "/v1/courses/"+courseID, tokA, nil, nil, &outline)
	if len(outline.GetUnits()) < 3 {
		t.Fatalf("outline has %d units", len(outline.GetUnits()))
	}
	unit1 := outline.GetUnits()[0]
	first, second := unit1.GetLessons()[0], unit1.GetLessons()[1]
	if first.GetStatus() != lessonv1.LessonStatus_LESSON_STATUS_AVAILABLE || second.GetStatus() != lessonv1.LessonStatus_LESSON_STATUS_LOCKED {
		t.Fatalf("statuses: first %v, second %v", first.GetStatus(), second.GetStatus())
	}
	authored := demo.Course.GetUnits()[0].GetLessons()[0]
	if authored.GetTitle() != first.GetTitle() {
		t.Fatalf("demo lesson %q is not the first lesson %q", authored.GetTitle(), first.GetTitle())
	}

	// The lesson, as a learner sees it: no answers anywhere in the JSON.
	var lesson lessonv1.LessonView
	raw := m.rest(t, 200, "GET", "/v1/lessons/"+first.GetId(), tokA, nil, nil, &lesson)
	if strings.Contains(raw, "accepted_answers") || strings.Contains(raw, "correct_index") || len(lesson.GetExercises()) != len(authored.GetExercises()) {
		t.Fatalf("lesson view leaks answers or lost exercises: %s", raw)
	}

	// Start (an idempotent POST), answer, complete.
	var att, again lessonv1.Attempt
	idem := map[string]string{"Idempotency-Key": "start-" + first.GetId()}
	m.rest(t, 200, "POST", "/v1/lessons/"+first.GetId()+"/attempts", tokA, idem, &lessonv1.StartLessonRequest{LessonId: first.GetId()}, &att)
	m.rest(t, 200, "POST", "/v1/lessons/"+first.GetId()+"/attempts", tokA, idem, &lessonv1.StartLessonRequest{LessonId: first.GetId()}, &again)
	if att.GetId() == "" || again.GetId() != att.GetId() {
		t.Fatalf("idempotent start gave %q then %q", att.GetId(), again.GetId())
	}
	for i, view := range lesson.GetExercises() {
		ex := authored.GetExercises()[i] // views come in authored order
		ans := answerFor(t, ex)
		if i == 0 {
			ans = wrongAnswerFor(ex)
		}
		var res lessonv1.AnswerResult
		m.rest(t, 200, "POST", "/v1/attempts/"+att.GetId()+"/answers", tokA, nil,
			&lessonv1.AnswerExerciseRequest{AttemptId: att.GetId(), ExerciseId: view.GetId(), Answer: ans}, &res)
		if res.GetCorrect() != (i != 0) || res.GetExpectedAnswer() == "" {
			t.Fatalf("exercise %d (%T): %v", i, ex.GetKind(), &res)
		}
	}
	var done, twice lessonv1.CompletionResult
	m.rest(t, 200, "POST", "/v1/attempts/"+att.GetId()+":complete", tokA, nil, &lessonv1.CompleteLessonRequest{AttemptId: att.GetId()}, &done)
	if done.GetXpAwarded() != authored.GetXpReward() || done.GetCorrectCount() != int32(len(authored.GetExercises())-1) {
		t.Fatalf("completion: %v (reward %d)", &done, authored.GetXpReward())
	}
	m.rest(t, 200, "POST", "/v1/attempts/"+att.GetId()+":complete", tokA, nil, &lessonv1.CompleteLessonRequest{AttemptId: att.GetId()}, &twice)
	if !twice.GetAlreadyCompleted() || twice.GetXpAwarded() != 0 {
		t.Fatalf("second completion: %v", &twice)
	}

	// Events carry it to progress, vocabulary and quiz.
	lessonXP := int64(done.GetXpAwarded())
	p := m.waitProgress(t, tokA, "XP for the lesson", func(p *progressv1.Progress) bool { return p.GetTotalXp() == lessonXP })
	if p.GetCurrentStreakDays() != 1 || p.GetLevel() < 1 || p.GetLessonsCompleted() != 1 {
		t.Fatalf("progress after the first lesson: %v", p)
	}
	var due vocabularyv1.GetDueQueueResponse
	waitFor(t, "the lesson's words in the queue", func() bool {
		due.Reset()
		m.rest(t, 200, "GET", "/v1/vocabulary/due", tokA, nil, nil, &due)
		return len(due.GetCards()) == len(authored.GetWords())
	})
	var quizzes quizv1.ListQuizzesResponse
	waitFor(t, "the unit quiz to unlock", func() bool {
		quizzes.Reset()
		m.rest(t, 200, "GET", "/v1/quizzes?unit_id="+unit1.GetUnit().GetId(), tokA, nil, nil, &quizzes)
		return len(quizzes.GetQuizzes()) == 1 && quizzes.GetQuizzes()[0].GetStatus() == quizv1.QuizStatus_QUIZ_STATUS_UNLOCKED
	})
	m.rest(t, 200, "GET", "/v1/courses/"+courseID, tokA, nil, nil, &outline)
	if outline.GetUnits()[0].GetLessons()[1].GetStatus() != lessonv1.LessonStatus_LESSON_STATUS_AVAILABLE {
		t.Fatalf("second lesson did not unlock: %v", outline.GetUnits()[0].GetLessons()[1].GetStatus())
	}

	// The quiz: every answer right.
	quizID := quizzes.GetQuizzes()[0].GetId()
	var authoredQuiz *content.Quiz
	for _, q := range demo.Quizzes {
		if q.Def.GetTitle() == quizzes.GetQuizzes()[0].GetTitle() {
			authoredQuiz = q
		}
	}
	if authoredQuiz == nil {
		t.Fatalf("quiz %q is not in the demo bundle", quizzes.GetQuizzes()[0].GetTitle())
	}
	var qa quizv1.QuizAttempt
	m.rest(t, 200, "POST", "/v1/quizzes/"+quizID+"/attempts", tokA, nil, &quizv1.StartQuizRequest{QuizId: quizID}, &qa)
	submit := &quizv1.SubmitQuizRequest{AttemptId: qa.GetId()}
	for qi, q := range qa.GetQuestions() {
		submit.Answers = append(submit.Answers, &quizv1.QuestionAnswer{QuestionId: q.GetId(), Answer: answerFor(t, authoredQuiz.Def.GetQuestions()[qi])})
	}
	var qr quizv1.QuizResult
	m.rest(t, 200, "POST", "/v1/quiz-attempts/"+qa.GetId()+":submit", tokA, nil, submit, &qr)
	if !qr.GetPassed() || qr.GetScorePercent() != 100 {
		t.Fatalf("quiz result: %v", &qr)
	}
	m.rest(t, 400, "POST", "/v1/quiz-attempts/"+qa.GetId()+":submit", tokA, nil, submit, nil) // repeated submission
	p = m.waitProgress(t, tokA, "XP for the quiz", func(p *progressv1.Progress) bool { return p.GetTotalXp() > lessonXP && p.GetQuizzesPassed() == 1 })
	afterQuiz := p.GetTotalXp()

	// A word review moves XP again.
	card := due.GetCards()[0]
	var rr vocabularyv1.ReviewResult
	m.rest(t, 200, "POST", "/v1/vocabulary/cards/"+card.GetId()+"/reviews", tokA, nil,
		&vocabularyv1.ReviewWordRequest{CardId: card.GetId(), Rating: vocabularyv1.Rating_RATING_GOOD}, &rr)
	if rr.GetCard().GetReps() != 1 {
		t.Fatalf("review: %v", &rr)
	}
	m.waitProgress(t, tokA, "XP for the review", func(p *progressv1.Progress) bool { return p.GetTotalXp() > afterQuiz })

	// The leaderboard shows the learner by display name.
	var board progressv1.GetLeaderboardResponse
	m.rest(t, 200, "GET", "/v1/leaderboards/weekly", tokA, nil, nil, &board)
	if len(board.GetEntries()) == 0 || board.GetEntries()[0].GetUserId() != idA || board.GetEntries()[0].GetDisplayName() != "An Tran" || board.GetMyEntry().GetRank() != 1 {
		t.Fatalf("leaderboard: %v", &board)
	}

	// Learner B cannot read or touch A's data, and cannot author content.
	m.rest(t, 404, "GET", "/v1/attempts/"+att.GetId(), tokB, nil, nil, nil)
	m.rest(t, 404, "POST", "/v1/attempts/"+att.GetId()+"/answers", tokB, nil,
		&lessonv1.AnswerExerciseRequest{AttemptId: att.GetId(), ExerciseId: lesson.GetExercises()[0].GetId(), Answer: wrongAnswerFor(authored.GetExercises()[0])}, nil)
	m.rest(t, 404, "GET", "/v1/quiz-attempts/"+qa.GetId(), tokB, nil, nil, nil)
	m.rest(t, 404, "POST", "/v1/vocabulary/cards/"+card.GetId()+"/reviews", tokB, nil,
		&vocabularyv1.ReviewWordRequest{CardId: card.GetId(), Rating: vocabularyv1.Rating_RATING_AGAIN}, nil)
	m.rest(t, 403, "POST", "/v1/admin/courses", tokB, nil,
		&lessonv1.CreateCourseRequest{Title: "Mine", SourceLanguage: "vi", TargetLanguage: "en"}, nil)
	var pB progressv1.Progress
	m.rest(t, 200, "GET", "/v1/progress/me", tokB, nil, nil, &pB)
	if pB.GetTotalXp() != 0 {
		t.Fatalf("B has A's XP: %v", &pB)
	}

	// Bad input gets a clear 4xx naming the problem.
	errBody := m.rest(t, 400, "POST", "/v1/attempts/"+att.GetId()+"/answers", tokA, nil,
		&lessonv1.AnswerExerciseRequest{AttemptId: att.GetId(), ExerciseId: "01a229d6-0000-7000-8000-000000000000", Answer: wrongAnswerFor(authored.GetExercises()[0])}, nil)
	if !strings.Contains(errBody, "exercise_id") && !strings.Contains(errBody, "FAILED_PRECONDITION") {
		t.Errorf("answer to an unknown exercise: %s", errBody)
	}
	m.rest(t, 404, "GET", "/v1/lessons/01a229d6-0000-7000-8000-000000000000", tokA, nil, nil, nil)
	if body := m.rest(t, 400, "GET", "/v1/lessons/not-a-uuid", tokA, nil, nil, nil); !strings.Contains(body, "lesson_id") {
		t.Errorf("bad lesson id: %s", body)
	}
	code, body := m.call(t, "POST", "/v1/vocabulary/cards/"+card.GetId()+"/reviews", tokA, map[string]any{"rating": 9})
	if code != 400 || !strings.Contains(body, "rating") {
		t.Errorf("rating 9: %d %s", code, body)
	}

	// Restart: consumers resume, nothing is counted twice.
	before := p.GetTotalXp()
	var final progressv1.Progress
	m.rest(t, 200, "GET", "/v1/progress/me", tokA, nil, nil, &final)
	m.stop()
	m2 := boot(t, dataDir, dbURL)
	var after progressv1.Progress
	m2.rest(t, 200, "GET", "/v1/progress/me", tokA, nil, nil, &after)
	if after.GetTotalXp() != final.GetTotalXp() || after.GetTotalXp() <= before || after.GetLessonsCompleted() != 1 {
		t.Fatalf("after restart: %v, before: %v", &after, &final)
	}
	m2.rest(t, 200, "GET", "/v1/courses", tokA, nil, nil, &courses)
	if len(courses.GetCourses()) != 1 {
		t.Fatalf("the demo course was loaded twice: %d courses", len(courses.GetCourses()))
	}
}

package progress

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

const testGroup = "progress-service-group"

// fakeNames is the display-name lookup of the tests: it records its calls.
type fakeNames struct {
	mu    sync.Mutex
	names map[string]string
	fail  error
	calls [][]string
}

func (f *fakeNames) DisplayNames(_ context.Context, ids []string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(ids))
	if f.fail != nil {
		return nil, f.fail
	}
	out := map[string]string{}
	for _, id := range ids {
		if n, ok := f.names[id]; ok {
			out[id] = n
		}
	}
	return out, nil
}

type harness struct {
	t      *testing.T
	d      *db.DB
	s      *Service
	router *kafka.Router
	names  *fakeNames
}

func newHarness(t *testing.T, d *db.DB, now time.Time) *harness {
	t.Helper()
	names := &fakeNames{names: map[string]string{}}
	s, err := New(d, names, Config{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	r := kafka.NewRouter()
	s.Subscribe(r, testGroup)
	return &harness{t: t, d: d, s: s, router: r, names: names}
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func event(t *testing.T, topic, userID string, payload proto.Message, when time.Time) kafka.Message {
	t.Helper()
	return servicetest.Event(t, kafka.EventSpec{Topic: topic, Key: userID, Subject: userID, Payload: payload, Time: when})
}

// deliver hands every message to the router twice, as a redelivering consumer would.
func (h *harness) deliver(msgs ...kafka.Message) {
	h.t.Helper()
	for _, m := range msgs {
		servicetest.Deliver(h.t, h.router, m, 2)
	}
}

func registered(t *testing.T, user, tz string, goal int32, when time.Time) kafka.Message {
	return event(t, kafka.TopicUserEvents, user, &userv1.UserRegistered{
		UserId: user, Email: user + "@example.com", Username: "u" + user[:8], DisplayName: "User", NativeLanguage: "vi",
		TargetLanguage: "en", Timezone: tz, DailyGoalXp: goal, RegisteredAt: timestamppb.New(when),
	}, when)
}

func lessonDone(t *testing.T, user, lesson string, xp int32, first bool, correct, total int32, when time.Time) kafka.Message {
	return event(t, kafka.TopicLessonEvents, user, &lessonv1.LessonCompleted{
		UserId: user, AttemptId: uuid.NewString(), LessonId: lesson, UnitId: "unit", CourseId: "course",
		Score: correct * 100 / max(total, 1), Accuracy: float64(correct) / float64(max(total, 1)), XpReward: xp,
		CompletedAt: timestamppb.New(when), FirstCompletion: first, CorrectCount: correct, ExerciseCount: total,
	}, when)
}

func quizDone(t *testing.T, user, quiz string, passed, firstPass, perfect bool, correct, total int32, when time.Time) kafka.Message {
	return event(t, kafka.TopicQuizEvents, user, &quizv1.QuizSubmitted{
		UserId: user, AttemptId: uuid.NewString(), QuizId: quiz, UnitId: "unit", ScorePercent: correct * 100 / total,
		Passed: passed, CorrectCount: correct, QuestionCount: total, Perfect: perfect, SubmittedAt: timestamppb.New(when),
		CourseId: "course", AttemptNumber: 1, FirstPass: firstPass,
	}, when)
}

func reviewed(t *testing.T, user, card string, before, after vocabularyv1.CardState, when time.Time) kafka.Message {
	return event(t, kafka.TopicVocabularyEvents, user, &vocabularyv1.WordReviewed{
		UserId: user, CardId: card, Term: "apple", Rating: vocabularyv1.Rating_RATING_GOOD, StateBefore: before,
		StateAfter: after, ReviewedAt: timestamppb.New(when), ReviewId: uuid.NewString(), Reps: 1,
	}, when)
}

func as(user string) context.Context { return servicetest.As(user, auth.RoleLearner) }

// outboxEvent is an outbox row with its payload decoded.
type outboxEvent struct {
	servicetest.OutboxRow
	payload proto.Message
}

// outboxEvents decodes every outbox row into its progress-events payload.
func outboxEvents(t *testing.T, d *db.DB) []outboxEvent {
	t.Helper()
	types := map[string]func() proto.Message{
		"puchi.progress.v1.XpAwarded":           func() proto.Message { return &progressv1.XpAwarded{} },
		"puchi.progress.v1.LevelUp":             func() proto.Message { return &progressv1.LevelUp{} },
		"puchi.progress.v1.StreakExtended":      func() proto.Message { return &progressv1.StreakExtended{} },
		"puchi.progress.v1.StreakFrozen":        func() proto.Message { return &progressv1.StreakFrozen{} },
		"puchi.progress.v1.StreakLost":          func() proto.Message { return &progressv1.StreakLost{} },
		"puchi.progress.v1.DailyGoalReached":    func() proto.Message { return &progressv1.DailyGoalReached{} },
		"puchi.progress.v1.AchievementUnlocked": func() proto.Message { return &progressv1.AchievementUnlocked{} },
	}
	var out []outboxEvent
	for _, r := range servicetest.OutboxRows(t, d) {
		mk, ok := types[r.Type]
		if !ok {
			t.Fatalf("unexpected outbox type %q", r.Type)
		}
		e := outboxEvent{OutboxRow: r, payload: mk()}
		if err := proto.Unmarshal(r.Value, e.payload); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func short(ceType string) string { return ceType[len("puchi.progress.v1."):] }

var count = servicetest.Count

// TestEventsBuildProgress feeds one learner's events (each delivered twice)
// through the router and checks the state, the RPCs and every published event.
func TestEventsBuildProgress(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		now := at(t, "2025-03-13T10:00:00Z") // 17:00 on 2025-03-13 in Ho Chi Minh City
		h := newHarness(t, d, now)
		u := uuid.NewString()
		g := vocabularyv1.CardState_CARD_STATE_NEW
		lrn, rev := vocabularyv1.CardState_CARD_STATE_LEARNING, vocabularyv1.CardState_CARD_STATE_REVIEW

		h.deliver(
			registered(t, u, "Asia/Ho_Chi_Minh", 30, at(t, "2025-03-09T00:00:00Z")),
			// Local 2025-03-10.
			lessonDone(t, u, "lesson-1", 25, true, 4, 5, at(t, "2025-03-10T02:00:00Z")),
			reviewed(t, u, "card-1", g, rev, at(t, "2025-03-10T03:00:00Z")),   // graduation: 2 XP
			reviewed(t, u, "card-2", lrn, lrn, at(t, "2025-03-10T04:00:00Z")), // 1 XP
			quizDone(t, u, "quiz-1", true, true, true, 5, 5, at(t, "2025-03-10T05:00:00Z")),
			// Local 2025-03-11 (01:00 in UTC+7, still the 10th in UTC).
			lessonDone(t, u, "lesson-1", 0, false, 5, 5, at(t, "2025-03-10T18:00:00Z")), // a repeat: no XP
			reviewed(t, u, "card-1", rev, rev, at(t, "2025-03-10T19:00:00Z")),
			// 2025-03-12 missed, no freeze held; local 2025-03-13.
			reviewed(t, u, "card-2", lrn, lrn, at(t, "2025-03-13T03:00:00Z")),
			event(t, kafka.TopicVocabularyEvents, u, &vocabularyv1.WordMastered{UserId: u, CardId: "card-1", Term: "apple",
				MasteredAt: timestamppb.New(at(t, "2025-03-13T03:00:00Z"))}, at(t, "2025-03-13T03:00:00Z")),
			quizDone(t, u, "quiz-2", false, false, false, 1, 4, at(t, "2025-03-13T03:30:00Z")),
		)

		// Progress.
		p, err := h.s.GetMyProgress(as(u), &progressv1.GetMyProgressRequest{})
		if err != nil {
			t.Fatal(err)
		}
		want := &progressv1.Progress{
			TotalXp: 60, Level: 2, XpIntoLevel: 10, XpForNextLevel: 70, CurrentStreakDays: 1, LongestStreakDays: 2,
			StreakFreezes: 0, TodayXp: 1, DailyGoalXp: 30, DailyGoalReached: false, WordsLearned: 1, LessonsCompleted: 1,
			QuizzesPassed: 1, Accuracy: 15.0 / 19.0, LocalDate: "2025-03-13",
		}
		if !proto.Equal(p.GetProgress(), want) {
			t.Fatalf("progress\n got %v\nwant %v", p.GetProgress(), want)
		}
		if n := count(t, d, `SELECT count(*) FROM xp_ledger WHERE user_id = ?`, u); n != 8 {
			t.Fatalf("ledger has %d rows, want 8 (one per lesson, quiz and review event)", n)
		}

		// Events: one per state change, in order, keyed by the learner.
		evs := outboxEvents(t, d)
		var got []string
		for _, e := range evs {
			if e.Topic != kafka.TopicProgressEvents || e.Key != u || e.Subject != u {
				t.Errorf("event %s: topic %s key %s subject %s", e.Type, e.Topic, e.Key, e.Subject)
			}
			got = append(got, short(e.Type))
		}
		wantTypes := []string{
			"XpAwarded", "StreakExtended", "AchievementUnlocked", // lesson-1
			"XpAwarded",                                                                                                     // card-1 graduation
			"XpAwarded",                                                                                                     // card-2
			"XpAwarded", "LevelUp", "DailyGoalReached", "AchievementUnlocked", "AchievementUnlocked", "AchievementUnlocked", // quiz-1
			"XpAwarded", "StreakExtended", // next local day
			"XpAwarded", "StreakLost", "StreakExtended", // after a missed day
		}
		if !slices.Equal(got, wantTypes) {
			t.Fatalf("outbox\n got %v\nwant %v", got, wantTypes)
		}
		checks := []struct {
			i    int
			want proto.Message
		}{
			{1, &progressv1.StreakExtended{UserId: u, StreakDays: 1, LocalDate: "2025-03-10", ExtendedAt: timestamppb.New(at(t, "2025-03-10T02:00:00Z"))}},
			{2, &progressv1.AchievementUnlocked{UserId: u, AchievementId: "first_lesson", Title: "First steps",
				Description: "Complete your first lesson", UnlockedAt: timestamppb.New(at(t, "2025-03-10T02:00:00Z"))}},
			{6, &progressv1.LevelUp{UserId: u, Level: 2, PreviousLevel: 1, TotalXp: 58, ReachedAt: timestamppb.New(at(t, "2025-03-10T05:00:00Z"))}},
			{7, &progressv1.DailyGoalReached{UserId: u, GoalXp: 30, TodayXp: 58, LocalDate: "2025-03-10", ReachedAt: timestamppb.New(at(t, "2025-03-10T05:00:00Z"))}},
			{12, &progressv1.StreakExtended{UserId: u, StreakDays: 2, LocalDate: "2025-03-11", ExtendedAt: timestamppb.New(at(t, "2025-03-10T19:00:00Z"))}},
			{14, &progressv1.StreakLost{UserId: u, PreviousStreakDays: 2, LocalDate: "2025-03-12", LostAt: timestamppb.New(at(t, "2025-03-13T03:00:00Z"))}},
			{15, &progressv1.StreakExtended{UserId: u, StreakDays: 1, LocalDate: "2025-03-13", ExtendedAt: timestamppb.New(at(t, "2025-03-13T03:00:00Z"))}},
		}
		for _, c := range checks {
			if !proto.Equal(evs[c.i].payload, c.want) {
				t.Errorf("event %d\n got %v\nwant %v", c.i, evs[c.i].payload, c.want)
			}
		}
		xpAwards := []struct {
			amount int32
			total  int64
			reason progressv1.XpReason
			source string
		}{
			{25, 25, progressv1.XpReason_XP_REASON_LESSON, ""}, {2, 27, progressv1.XpReason_XP_REASON_REVIEW, "card-1"},
			{1, 28, progressv1.XpReason_XP_REASON_REVIEW, "card-2"}, {30, 58, progressv1.XpReason_XP_REASON_QUIZ, ""},
			{1, 59, progressv1.XpReason_XP_REASON_REVIEW, "card-1"}, {1, 60, progressv1.XpReason_XP_REASON_REVIEW, "card-2"},
		}
		k := 0
		for _, e := range evs {
			x, ok := e.payload.(*progressv1.XpAwarded)
			if !ok {
				continue
			}
			w := xpAwards[k]
			k++
			if x.GetUserId() != u || x.GetAmount() != w.amount || x.GetTotalXp() != w.total || x.GetReason() != w.reason ||
				x.GetSourceEventId() == "" || x.GetSourceId() == "" || (w.source != "" && x.GetSourceId() != w.source) || x.GetAwardedAt() == nil {
				t.Errorf("XpAwarded %d: %v, want %+v", k, x, w)
			}
		}

		// Achievements: unlocked first (most recent first, table order on ties), then locked.
		ach, err := h.s.ListAchievements(as(u), &progressv1.ListAchievementsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range ach.GetAchievements() {
			ids = append(ids, a.GetId())
			if a.GetUnlocked() != (a.GetUnlockedAt() != nil) {
				t.Errorf("%s: unlocked %v at %v", a.GetId(), a.GetUnlocked(), a.GetUnlockedAt())
			}
			if a.GetId() == "streak_7" && (a.GetProgress() != 2 || a.GetTarget() != 7) {
				t.Errorf("streak_7 progress %d/%d, want 2/7", a.GetProgress(), a.GetTarget())
			}
			if a.GetId() == "words_10" && a.GetProgress() != 1 {
				t.Errorf("words_10 progress %d, want 1", a.GetProgress())
			}
		}
		if len(ids) != len(Achievements) || !slices.Equal(ids[:4], []string{"first_quiz", "perfect_quiz", "daily_goal", "first_lesson"}) {
			t.Fatalf("achievements order %v", ids)
		}

		// Stats: every day of the span, and both weeks it touches.
		st, err := h.s.GetStats(as(u), &progressv1.GetStatsRequest{Days: 5})
		if err != nil {
			t.Fatal(err)
		}
		wantDaily := []*progressv1.DailyActivity{
			{Date: "2025-03-09"},
			{Date: "2025-03-10", Xp: 58, Lessons: 1, Reviews: 2, Quizzes: 1, GoalReached: true},
			{Date: "2025-03-11", Xp: 1, Lessons: 1, Reviews: 1},
			{Date: "2025-03-12"},
			{Date: "2025-03-13", Xp: 1, Reviews: 1, Quizzes: 1},
		}
		wantWeekly := []*progressv1.WeeklyXp{{WeekStart: "2025-03-03"}, {WeekStart: "2025-03-10", Xp: 60}}
		if !proto.Equal(st, &progressv1.GetStatsResponse{Daily: wantDaily, Weekly: wantWeekly}) {
			t.Fatalf("stats %v", st)
		}
		if st, err := h.s.GetStats(as(u), &progressv1.GetStatsRequest{}); err != nil || len(st.GetDaily()) != 30 {
			t.Fatalf("default stats span: %d days, %v", len(st.GetDaily()), err)
		}

		// The ledger guards on its own: a consumer group whose inbox never saw these
		// events (or forgot them) applies nothing again.
		before := len(evs)
		other := kafka.NewRouter()
		h.s.Subscribe(other, "another-group")
		m := lessonDone(t, u, "lesson-9", 40, true, 1, 1, at(t, "2025-03-13T04:00:00Z"))
		for _, r := range []*kafka.Router{h.router, other} {
			if err := r.Handle(context.Background(), &m); err != nil {
				t.Fatal(err)
			}
		}
		p2, _ := h.s.GetMyProgress(as(u), &progressv1.GetMyProgressRequest{})
		if p2.GetProgress().GetTotalXp() != 100 || p2.GetProgress().GetLessonsCompleted() != 2 {
			t.Fatalf("after one more lesson through two groups: %v", p2.GetProgress())
		}
		// 100 XP is still level 2; today's 41 XP reach the goal of 30: two events.
		if after := outboxEvents(t, d); len(after) != before+2 || short(after[before].Type) != "XpAwarded" ||
			short(after[before+1].Type) != "DailyGoalReached" {
			t.Fatalf("outbox grew by %d", len(after)-before)
		}

		// Only signed-in learners, their own data.
		if _, err := h.s.GetMyProgress(context.Background(), &progressv1.GetMyProgressRequest{}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("anonymous GetMyProgress: %v", err)
		}
		stranger, err := h.s.GetMyProgress(as(uuid.NewString()), &progressv1.GetMyProgressRequest{})
		if err != nil || stranger.GetProgress().GetTotalXp() != 0 || stranger.GetProgress().GetLevel() != 1 ||
			stranger.GetProgress().GetDailyGoalXp() != 20 || stranger.GetProgress().GetLocalDate() != "2025-03-13" {
			t.Fatalf("a learner without events: %v %v", stranger, err)
		}
	})
}

// A freeze earned by a 7-day streak is spent on one missed day (StreakFrozen).
func TestStreakFreezeThroughEvents(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, at(t, "2025-03-20T12:00:00Z"))
		u := uuid.NewString()
		var msgs []kafka.Message
		day := at(t, "2025-03-01T12:00:00Z")
		for i := range 7 {
			msgs = append(msgs, reviewed(t, u, "c", vocabularyv1.CardState_CARD_STATE_REVIEW, vocabularyv1.CardState_CARD_STATE_REVIEW, day.AddDate(0, 0, i)))
		}
		msgs = append(msgs, reviewed(t, u, "c", vocabularyv1.CardState_CARD_STATE_REVIEW, vocabularyv1.CardState_CARD_STATE_REVIEW, day.AddDate(0, 0, 8)))
		h.deliver(msgs...)
		evs := outboxEvents(t, d)
		var frozen *progressv1.StreakFrozen
		var unlocked []string
		for _, e := range evs {
			switch p := e.payload.(type) {
			case *progressv1.StreakFrozen:
				frozen = p
			case *progressv1.AchievementUnlocked:
				unlocked = append(unlocked, p.GetAchievementId())
			}
		}
		want := &progressv1.StreakFrozen{UserId: u, StreakDays: 7, LocalDate: "2025-03-08", FreezesLeft: 0,
			FrozenAt: timestamppb.New(day.AddDate(0, 0, 8))}
		if !proto.Equal(frozen, want) {
			t.Fatalf("StreakFrozen %v, want %v", frozen, want)
		}
		if !slices.Equal(unlocked, []string{"streak_7"}) {
			t.Fatalf("unlocked %v", unlocked)
		}
		var l Learner
		l, _, err := h.s.store.Learner(context.Background(), d, u)
		if err != nil || l.Streak != (Streak{Current: 8, Longest: 8, Freezes: 0, LastDate: "2025-03-09"}) {
			t.Fatalf("streak %+v %v", l.Streak, err)
		}
	})
}

// TestLeaderboard checks ordering (equal XP: who reached it first), the caller's
// rank outside the top, one display-name lookup, and the fallback without names.
func TestLeaderboard(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, at(t, "2025-03-14T12:00:00Z")) // week 2025-W11 (Monday 2025-03-10)
		a, b, c, dd, e := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
		h.names.names = map[string]string{a: "An", b: "Binh", c: "Chi", dd: "Dung"}
		h.deliver(
			lessonDone(t, a, "l1", 50, true, 1, 1, at(t, "2025-03-11T10:00:00Z")),
			lessonDone(t, b, "l1", 30, true, 1, 1, at(t, "2025-03-10T08:00:00Z")),
			lessonDone(t, b, "l2", 20, true, 1, 1, at(t, "2025-03-11T09:00:00Z")), // 50, reached before a
			lessonDone(t, c, "l1", 80, true, 1, 1, at(t, "2025-03-12T10:00:00Z")),
			lessonDone(t, dd, "l1", 10, true, 1, 1, at(t, "2025-03-13T10:00:00Z")),
			lessonDone(t, dd, "l2", 500, true, 1, 1, at(t, "2025-03-09T23:59:00Z")), // the week before (Sunday)
		)
		lb, err := h.s.GetLeaderboard(as(dd), &progressv1.GetLeaderboardRequest{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		want := &progressv1.GetLeaderboardResponse{
			Week: "2025-W11", StartsAt: timestamppb.New(at(t, "2025-03-10T00:00:00Z")), EndsAt: timestamppb.New(at(t, "2025-03-17T00:00:00Z")),
			Entries: []*progressv1.LeaderboardEntry{{Rank: 1, UserId: c, DisplayName: "Chi", Xp: 80}, {Rank: 2, UserId: b, DisplayName: "Binh", Xp: 50}},
			MyEntry: &progressv1.LeaderboardEntry{Rank: 4, UserId: dd, DisplayName: "Dung", Xp: 10},
		}
		if !proto.Equal(lb, want) {
			t.Fatalf("leaderboard\n got %v\nwant %v", lb, want)
		}
		if len(h.names.calls) != 1 || !slices.Equal(h.names.calls[0], []string{c, b, dd}) {
			t.Fatalf("name lookups %v, want one call for [c b dd]", h.names.calls)
		}

		// Default size, the caller inside the top; a named week.
		lb, err = h.s.GetLeaderboard(as(a), &progressv1.GetLeaderboardRequest{Week: "2025-W11"})
		if err != nil || len(lb.GetEntries()) != 4 || lb.GetMyEntry().GetRank() != 3 || lb.GetEntries()[2].GetUserId() != a ||
			lb.GetEntries()[3].GetUserId() != dd || len(h.names.calls[1]) != 4 {
			t.Fatalf("default leaderboard %v %v (lookups %v)", lb, err, h.names.calls)
		}
		// The week before: only dd; a learner without XP that week has rank 0.
		lb, err = h.s.GetLeaderboard(as(e), &progressv1.GetLeaderboardRequest{Week: "2025-W10"})
		if err != nil || len(lb.GetEntries()) != 1 || lb.GetEntries()[0].GetXp() != 500 ||
			!proto.Equal(lb.GetMyEntry(), &progressv1.LeaderboardEntry{UserId: e}) {
			t.Fatalf("previous week %v %v", lb, err)
		}
		if _, err := h.s.GetLeaderboard(as(e), &progressv1.GetLeaderboardRequest{Week: "2025-W53"}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("week 53 of 2025: %v", err)
		}

		// The user service down: the same leaderboard, without names.
		h.names.fail = errors.New("user service unavailable")
		lb, err = h.s.GetLeaderboard(as(dd), &progressv1.GetLeaderboardRequest{Limit: 2})
		if err != nil || len(lb.GetEntries()) != 2 || lb.GetEntries()[0].GetDisplayName() != "" || lb.GetMyEntry().GetRank() != 4 {
			t.Fatalf("without names: %v %v", lb, err)
		}
	})
}

// UserDeleted erases the learner everywhere; their late events do not bring them back.
func TestUserDeletedErasesEverything(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, at(t, "2025-03-14T12:00:00Z"))
		u, other := uuid.NewString(), uuid.NewString()
		h.deliver(
			registered(t, u, "Europe/Paris", 10, at(t, "2025-03-10T00:00:00Z")),
			lessonDone(t, u, "l1", 30, true, 3, 3, at(t, "2025-03-11T10:00:00Z")),
			reviewed(t, u, "card", vocabularyv1.CardState_CARD_STATE_NEW, vocabularyv1.CardState_CARD_STATE_REVIEW, at(t, "2025-03-11T11:00:00Z")),
			quizDone(t, u, "q1", true, true, true, 2, 2, at(t, "2025-03-11T12:00:00Z")),
			lessonDone(t, other, "l1", 30, true, 3, 3, at(t, "2025-03-11T10:00:00Z")),
		)
		tables := []string{"learners", "xp_ledger", "learner_items", "daily_activity", "weekly_xp", "achievements"}
		for _, table := range tables {
			if count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, u) == 0 {
				t.Fatalf("%s has no row for the learner before deletion", table)
			}
		}
		h.deliver(
			event(t, kafka.TopicUserEvents, u, &userv1.UserDeleted{UserId: u, DeletedAt: timestamppb.New(at(t, "2025-03-12T00:00:00Z"))}, at(t, "2025-03-12T00:00:00Z")),
			// Still in flight on other topics when the account was deleted.
			lessonDone(t, u, "l2", 30, true, 3, 3, at(t, "2025-03-11T13:00:00Z")),
			registered(t, u, "Europe/Paris", 10, at(t, "2025-03-10T00:00:00Z")),
		)
		for _, table := range tables {
			if n := count(t, d, `SELECT count(*) FROM `+table+` WHERE user_id = ?`, u); n != 0 {
				t.Errorf("%s keeps %d rows of the deleted learner", table, n)
			}
		}
		p, err := h.s.GetMyProgress(as(u), &progressv1.GetMyProgressRequest{})
		if err != nil || p.GetProgress().GetTotalXp() != 0 {
			t.Fatalf("progress after deletion: %v %v", p, err)
		}
		lb, err := h.s.GetLeaderboard(as(other), &progressv1.GetLeaderboardRequest{})
		if err != nil || len(lb.GetEntries()) != 1 || lb.GetEntries()[0].GetUserId() != other {
			t.Fatalf("leaderboard after deletion: %v %v", lb, err)
		}
		if count(t, d, `SELECT count(*) FROM learners WHERE user_id = ?`, other) != 1 {
			t.Fatal("the other learner was erased too")
		}
	})
}

// Events that can never be applied are dead-lettered, not retried.
func TestEventWithoutUserIsPermanent(t *testing.T) {
	h := newHarness(t, dbtest.Open(t, db.DialectSQLite, migrations), time.Now())
	m := event(t, kafka.TopicLessonEvents, "", &lessonv1.LessonCompleted{LessonId: "l"}, time.Now())
	if err := h.router.Handle(context.Background(), &m); !kafka.IsPermanent(err) {
		t.Fatalf("LessonCompleted without user: %v", err)
	}
}

package vocabulary

import (
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
)

var t0 = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func mustScheduler(t *testing.T) *Scheduler {
	t.Helper()
	s, err := DefaultConfig().Scheduler()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSchedulerRefusesBadSettings(t *testing.T) {
	t.Parallel()
	good := SchedulerConfig{DesiredRetention: 0.9, LearningSteps: []time.Duration{time.Minute}, MaximumInterval: 36500}
	if _, err := NewScheduler(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mod := range map[string]func(*SchedulerConfig){
		"retention 0":        func(c *SchedulerConfig) { c.DesiredRetention = 0 },
		"retention 1":        func(c *SchedulerConfig) { c.DesiredRetention = 1 },
		"max interval 0":     func(c *SchedulerConfig) { c.MaximumInterval = 0 },
		"max interval big":   func(c *SchedulerConfig) { c.MaximumInterval = 36501 },
		"step of seconds":    func(c *SchedulerConfig) { c.LearningSteps = []time.Duration{90 * time.Second} },
		"step of a day":      func(c *SchedulerConfig) { c.LearningSteps = []time.Duration{24 * time.Hour} },
		"negative relearn":   func(c *SchedulerConfig) { c.RelearningSteps = []time.Duration{-time.Minute} },
		"zero learning step": func(c *SchedulerConfig) { c.LearningSteps = []time.Duration{0} },
	} {
		c := good
		mod(&c)
		if _, err := NewScheduler(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A new card walks the learning steps (1m, 10m), graduates, lapses into
// relearning (10m) and graduates again.
func TestSchedulerLifecycle(t *testing.T) {
	t.Parallel()
	s := mustScheduler(t)
	m := NewMemory(t0)
	steps := []struct {
		rating           Rating
		after            time.Duration // since the previous review
		state            State
		step, reps, laps int
		due              time.Duration // from the review; 0 = check days only
		minDays          int
	}{
		{RatingAgain, 0, StateLearning, 0, 1, 0, time.Minute, 0},
		{RatingGood, time.Minute, StateLearning, 1, 2, 0, 10 * time.Minute, 0},
		{RatingGood, 10 * time.Minute, StateReview, 0, 3, 0, 0, 1},
		{RatingGood, 3 * 24 * time.Hour, StateReview, 0, 4, 0, 0, 2},
		{RatingAgain, 10 * 24 * time.Hour, StateRelearning, 0, 5, 1, 10 * time.Minute, 0},
		{RatingGood, 10 * time.Minute, StateReview, 0, 6, 1, 0, 1},
	}
	at := t0
	for i, st := range steps {
		at = at.Add(st.after)
		l, err := s.Review(m, st.rating, at)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		a := l.After
		if a.State != st.state || a.Step != st.step || a.Reps != st.reps || a.Lapses != st.laps {
			t.Fatalf("step %d: %+v", i, a)
		}
		if st.due > 0 && !a.Due.Equal(at.Add(st.due)) {
			t.Fatalf("step %d: due %s, want %s", i, a.Due, at.Add(st.due))
		}
		if st.due == 0 && (a.ScheduledDays < st.minDays || !a.Due.Equal(at.AddDate(0, 0, a.ScheduledDays))) {
			t.Fatalf("step %d: scheduled %d days, due %s", i, a.ScheduledDays, a.Due)
		}
		if l.Before != m || !a.LastReview.Equal(at) || a.Stability <= 0 || a.Difficulty < 1 || a.Difficulty > 10 {
			t.Fatalf("step %d: log %+v", i, l)
		}
		m = a
	}
}

func TestSchedulerRatingsOrderIntervals(t *testing.T) {
	t.Parallel()
	s := mustScheduler(t)
	// A card in review, reviewed on time: hard < good < easy.
	m := NewMemory(t0)
	l, err := s.Review(m, RatingEasy, t0)
	if err != nil || l.After.State != StateReview {
		t.Fatalf("easy on new: %+v %v", l, err)
	}
	m = l.After
	at := m.Due
	var prev int
	for _, r := range []Rating{RatingHard, RatingGood, RatingEasy} {
		l, err := s.Review(m, r, at)
		if err != nil {
			t.Fatal(err)
		}
		if l.After.ScheduledDays <= prev {
			t.Fatalf("rating %d: %d days after %d", r, l.After.ScheduledDays, prev)
		}
		if l.ElapsedDays != UTCDaysBetween(m.LastReview, at) {
			t.Fatalf("elapsed %d", l.ElapsedDays)
		}
		prev = l.After.ScheduledDays
	}
}

func TestSchedulerRefusesBadInput(t *testing.T) {
	t.Parallel()
	s := mustScheduler(t)
	for _, r := range []Rating{0, 5, -1} {
		_, err := s.Review(NewMemory(t0), r, t0)
		if e, ok := apperr.As(err); !ok || e.Field != "rating" || e.Kind != apperr.KindInvalid {
			t.Errorf("rating %d: %v", r, err)
		}
	}
	l, err := s.Review(NewMemory(t0), RatingGood, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Review(l.After, RatingGood, t0.Add(-time.Second))
	if e, ok := apperr.As(err); !ok || e.Field != "reviewed_at" {
		t.Errorf("review before last: %v", err)
	}
}

func TestUTCDaysBetween(t *testing.T) {
	t.Parallel()
	late := time.Date(2026, 1, 1, 23, 59, 0, 0, time.UTC)
	for _, c := range []struct {
		a, b time.Time
		want int
	}{
		{late, late.Add(time.Minute), 1}, // crosses UTC midnight
		{late.Add(-23 * time.Hour), late, 0},
		{late, late.AddDate(0, 0, 30), 30},
		{late, late.Add(-time.Hour), 0},
		// A local evening in Hanoi (UTC+7) and the next local morning are the same UTC day.
		{time.Date(2026, 1, 2, 0, 30, 0, 0, time.FixedZone("ICT", 7*3600)), time.Date(2026, 1, 2, 6, 0, 0, 0, time.FixedZone("ICT", 7*3600)), 0},
	} {
		if got := UTCDaysBetween(c.a, c.b); got != c.want {
			t.Errorf("UTCDaysBetween(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestStateAndRatingNumbering(t *testing.T) {
	t.Parallel()
	for _, st := range []State{StateNew, StateLearning, StateReview, StateRelearning} {
		got, err := ParseState(st.String())
		if err != nil || got != st || stateFromFSRS(st.toFSRS()) != st {
			t.Errorf("state %d: %v %v", st, got, err)
		}
	}
	if _, err := ParseState("graduated"); err == nil {
		t.Error("unknown state parsed")
	}
	if CheckRating(RatingAgain) != nil || CheckRating(RatingEasy) != nil || CheckRating(0) == nil || CheckRating(5) == nil {
		t.Error("CheckRating")
	}
}

func TestNewCardAndTerms(t *testing.T) {
	t.Parallel()
	c, err := NewCard("id", "u", Word{Term: "  good   morning ", Translation: " chào buổi sáng "}, SourceManual, "", t0)
	if err != nil || c.Term != "good morning" || c.Translation != "chào buổi sáng" || c.Memory.State != StateNew || !c.Memory.Due.Equal(t0) {
		t.Fatalf("%+v %v", c, err)
	}
	for _, w := range []Word{{Term: "  ", Translation: "x"}, {Term: "x", Translation: " "}} {
		if _, err := NewCard("id", "u", w, SourceManual, "", t0); apperr.KindOf(err) != apperr.KindInvalid {
			t.Errorf("%+v: %v", w, err)
		}
	}
}

func TestDailyLimitsAndQueueShape(t *testing.T) {
	t.Parallel()
	l := DailyLimits{New: 50, Reviews: 200}
	if n, r := l.Left(DailyCounts{New: 10, Reviews: 250}); n != 40 || r != 0 {
		t.Errorf("Left = %d, %d", n, r)
	}
	for _, c := range []struct {
		limit, due, fresh, newLeft, revLeft, wantRev, wantNew int
	}{
		{50, 10, 100, 50, 200, 10, 40}, // reviews first, new cards fill the rest
		{50, 80, 100, 50, 200, 50, 0},  // reviews alone fill the queue
		{50, 80, 100, 50, 5, 5, 45},    // review limit nearly spent
		{50, 0, 100, 3, 200, 0, 3},     // new limit nearly spent
		{50, 0, 0, 50, 200, 0, 0},
		{10, 3, 2, 0, 0, 0, 0}, // both limits spent
	} {
		r, n := QueueShape(c.limit, c.due, c.fresh, c.newLeft, c.revLeft)
		if r != c.wantRev || n != c.wantNew {
			t.Errorf("QueueShape%v = %d, %d", c, r, n)
		}
	}
}

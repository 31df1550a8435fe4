package progress

import (
	"testing"
	"time"
)

var testRules = Rules{LevelThresholds: DefaultLevelThresholds, FreezeEvery: 7, MaxFreezes: 2}

func TestLevelFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		total        int64
		level        int32
		into, toNext int64
	}{
		{0, 1, 0, 50},
		{49, 1, 49, 50},
		{50, 2, 0, 70},
		{119, 2, 69, 70},
		{350, 5, 0, 170},
		{1800, 10, 0, 550},
		{14499, 19, 2499, 2500},
		{14500, 20, 0, 0},
		{99999, 20, 85499, 0},
	}
	for _, c := range cases {
		got := LevelFor(c.total, DefaultLevelThresholds)
		if got != (LevelInfo{c.level, c.into, c.toNext}) {
			t.Errorf("LevelFor(%d) = %+v, want level %d into %d next %d", c.total, got, c.level, c.into, c.toNext)
		}
	}
	if err := CheckLevelThresholds(DefaultLevelThresholds); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]int64{nil, {10, 20}, {0, 50, 50}, {0, 50, 40}} {
		if CheckLevelThresholds(bad) == nil {
			t.Errorf("CheckLevelThresholds(%v) accepted", bad)
		}
	}
}

func TestAdvanceStreak(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		before Streak
		date   string
		after  Streak
		change StreakChange
	}{
		{"first activity", Streak{}, "2025-03-10",
			Streak{1, 1, 0, "2025-03-10"}, StreakChange{Extended: true}},
		{"same day again", Streak{3, 5, 1, "2025-03-10"}, "2025-03-10",
			Streak{3, 5, 1, "2025-03-10"}, StreakChange{}},
		{"late event of an earlier day", Streak{3, 5, 1, "2025-03-10"}, "2025-03-08",
			Streak{3, 5, 1, "2025-03-10"}, StreakChange{}},
		{"next day", Streak{3, 5, 0, "2025-03-10"}, "2025-03-11",
			Streak{4, 5, 0, "2025-03-11"}, StreakChange{Extended: true}},
		{"next day beats longest", Streak{5, 5, 0, "2025-03-10"}, "2025-03-11",
			Streak{6, 6, 0, "2025-03-11"}, StreakChange{Extended: true}},
		{"reaching 7 earns a freeze", Streak{6, 6, 0, "2025-03-10"}, "2025-03-11",
			Streak{7, 7, 1, "2025-03-11"}, StreakChange{Extended: true}},
		{"reaching 14 earns a second freeze", Streak{13, 13, 1, "2025-03-10"}, "2025-03-11",
			Streak{14, 14, 2, "2025-03-11"}, StreakChange{Extended: true}},
		{"reaching 21 holds at most 2", Streak{20, 20, 2, "2025-03-10"}, "2025-03-11",
			Streak{21, 21, 2, "2025-03-11"}, StreakChange{Extended: true}},
		{"one missed day, freeze held: spent", Streak{8, 8, 1, "2025-03-10"}, "2025-03-12",
			Streak{9, 9, 0, "2025-03-12"},
			StreakChange{Extended: true, Frozen: true, Kept: 8, FreezesLeft: 0, MissedDate: "2025-03-11"}},
		{"freeze spent, the extension reaches 14 and earns one back", Streak{13, 13, 2, "2025-03-10"}, "2025-03-12",
			Streak{14, 14, 2, "2025-03-12"},
			StreakChange{Extended: true, Frozen: true, Kept: 13, FreezesLeft: 1, MissedDate: "2025-03-11"}},
		{"one missed day, no freeze: lost", Streak{4, 9, 0, "2025-03-10"}, "2025-03-12",
			Streak{1, 9, 0, "2025-03-12"},
			StreakChange{Extended: true, Lost: true, Previous: 4, MissedDate: "2025-03-11"}},
		{"two missed days, freezes held: lost, freezes kept", Streak{8, 8, 2, "2025-03-10"}, "2025-03-13",
			Streak{1, 8, 2, "2025-03-13"},
			StreakChange{Extended: true, Lost: true, Previous: 8, MissedDate: "2025-03-11"}},
		{"across a month end", Streak{2, 2, 0, "2025-02-28"}, "2025-03-01",
			Streak{3, 3, 0, "2025-03-01"}, StreakChange{Extended: true}},
		{"across a leap day", Streak{2, 2, 0, "2024-02-28"}, "2024-03-01",
			Streak{1, 2, 0, "2024-03-01"}, StreakChange{Extended: true, Lost: true, Previous: 2, MissedDate: "2024-02-29"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ch := AdvanceStreak(c.before, c.date, testRules)
			if got != c.after || ch != c.change {
				t.Fatalf("AdvanceStreak(%+v, %s)\n got %+v %+v\nwant %+v %+v", c.before, c.date, got, ch, c.after, c.change)
			}
		})
	}
}

// Streak days are the learner's local days: the same instants give different
// days in different zones, and daylight-saving days (23 or 25 hours) are one day.
func TestStreakByLocalDayAcrossZonesAndDST(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name    string
		tz      string
		times   []string
		streak  int32
		lastDay string
	}{
		// 16:30Z and 17:30Z are 23:30 on the 10th and 00:30 on the 11th in Ho Chi Minh City (UTC+7).
		{"one hour apart, two local days", "Asia/Ho_Chi_Minh", []string{"2025-03-10T16:30:00Z", "2025-03-10T17:30:00Z"}, 2, "2025-03-11"},
		{"same instants, one UTC day", "UTC", []string{"2025-03-10T16:30:00Z", "2025-03-10T17:30:00Z"}, 1, "2025-03-10"},
		// 47 hours apart but consecutive local days in UTC-10 (Honolulu: 00:30 on the 10th, 23:30 on the 11th).
		{"47 hours apart, consecutive days", "Pacific/Honolulu", []string{"2025-03-10T10:30:00Z", "2025-03-12T09:30:00Z"}, 2, "2025-03-11"},
		// New York springs forward on 2025-03-09 (a 23-hour day): 23:30 EST on the 8th, 23:30 EDT on the 9th.
		{"spring forward", "America/New_York", []string{"2025-03-09T04:30:00Z", "2025-03-10T03:30:00Z"}, 2, "2025-03-09"},
		// 00:30 EDT on 2025-11-02, then 23:30 EST the same day (a 25-hour day): one day.
		{"fall back, 25-hour day", "America/New_York", []string{"2025-11-02T04:30:00Z", "2025-11-03T04:30:00Z"}, 1, "2025-11-02"},
		// Just after midnight on the 3rd (EST) is the next day.
		{"fall back, next day", "America/New_York", []string{"2025-11-02T04:30:00Z", "2025-11-03T05:30:00Z"}, 2, "2025-11-03"},
		// Apia (UTC+13) and Kiritimati (UTC+14) are ahead of UTC by more than half a day.
		{"far east", "Pacific/Kiritimati", []string{"2025-03-10T09:30:00Z", "2025-03-10T10:30:00Z"}, 2, "2025-03-11"},
		{"unknown zone counts as UTC", "Mars/Olympus", []string{"2025-03-10T16:30:00Z", "2025-03-10T17:30:00Z"}, 1, "2025-03-10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s Streak
			for _, ts := range c.times {
				s, _ = AdvanceStreak(s, LocalDate(c.tz, at(ts)), testRules)
			}
			if s.Current != c.streak || s.LastDate != c.lastDay {
				t.Fatalf("streak %d ending %s, want %d ending %s", s.Current, s.LastDate, c.streak, c.lastDay)
			}
		})
	}
}

func TestStreakCurrentOn(t *testing.T) {
	t.Parallel()
	s := Streak{Current: 5, Longest: 5, LastDate: "2025-03-10"}
	frozen := s
	frozen.Freezes = 1
	for _, c := range []struct {
		s     Streak
		today string
		want  int32
	}{
		{Streak{}, "2025-03-10", 0},
		{s, "2025-03-10", 5},
		{s, "2025-03-11", 5},
		{s, "2025-03-12", 0},
		{frozen, "2025-03-12", 5},
		{frozen, "2025-03-13", 0},
	} {
		if got := c.s.CurrentOn(c.today); got != c.want {
			t.Errorf("%+v on %s: %d, want %d", c.s, c.today, got, c.want)
		}
	}
}

func TestWeeks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ at, monday, iso string }{
		{"2025-02-10T00:00:00Z", "2025-02-10", "2025-W07"},
		{"2025-02-16T23:59:59Z", "2025-02-10", "2025-W07"},
		{"2025-02-17T00:00:00Z", "2025-02-17", "2025-W08"},
		{"2025-12-31T12:00:00Z", "2025-12-29", "2026-W01"},
		{"2021-01-03T12:00:00Z", "2020-12-28", "2020-W53"},
		// A Monday 00:30 in Ho Chi Minh City is still Sunday in UTC: the week is UTC's.
		{"2025-02-16T17:30:00+00:00", "2025-02-10", "2025-W07"},
	} {
		at, _ := time.Parse(time.RFC3339, c.at)
		m := WeekStart(at)
		if m.Format(dateLayout) != c.monday || ISOWeek(m) != c.iso || WeekKey(at) != c.monday {
			t.Errorf("%s: week %s %s, want %s %s", c.at, m.Format(dateLayout), ISOWeek(m), c.monday, c.iso)
		}
		back, ok := ParseISOWeek(c.iso)
		if !ok || !back.Equal(m) {
			t.Errorf("ParseISOWeek(%s) = %v %v, want %v", c.iso, back, ok, m)
		}
	}
	for _, bad := range []string{"2025-W53", "2025-W00", "2025-W54", "2025-7", "25-W07", "2025-W7x"} {
		if _, ok := ParseISOWeek(bad); ok {
			t.Errorf("ParseISOWeek(%q) accepted", bad)
		}
	}
}

func TestQuizXP(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		first, perfect bool
		want           int32
	}{{true, false, 20}, {true, true, 30}, {false, true, 0}, {false, false, 0}} {
		if got := QuizXP(20, 10, c.first, c.perfect); got != c.want {
			t.Errorf("QuizXP(first=%v, perfect=%v) = %d, want %d", c.first, c.perfect, got, c.want)
		}
	}
}

func TestApplyDailyGoalOncePerDay(t *testing.T) {
	t.Parallel()
	l := NewLearner("u")
	l.SetProfile("Asia/Ho_Chi_Minh", 30)
	unlocked := map[string]bool{}
	day := Day{Date: "2025-03-10"}
	steps := []struct {
		xp       int32
		reached  bool
		todayXP  int32
		goalDays int32
	}{{20, false, 20, 0}, {10, true, 30, 1}, {15, false, 45, 1}}
	for i, st := range steps {
		out := l.Apply(&day, Gain{XP: st.xp, Reviews: 1}, unlocked, testRules)
		if out.GoalReached != st.reached || day.XP != st.todayXP || l.GoalsReached != st.goalDays || day.Reviews != int32(i+1) {
			t.Fatalf("step %d: reached=%v day=%+v goals=%d", i, out.GoalReached, day, l.GoalsReached)
		}
	}
	next := Day{Date: "2025-03-11"}
	if out := l.Apply(&next, Gain{XP: 30}, unlocked, testRules); !out.GoalReached || l.GoalsReached != 2 {
		t.Fatalf("next day: %+v goals=%d", out, l.GoalsReached)
	}
	// No XP: neither the goal nor the streak moves.
	quiet := Day{Date: "2025-03-12"}
	if out := l.Apply(&quiet, Gain{Quizzes: 1}, unlocked, testRules); out.GoalReached || out.Streak.Extended || out.XP != 0 {
		t.Fatalf("no-XP gain changed goal or streak: %+v", out)
	}
}

func TestSetProfileDefaults(t *testing.T) {
	t.Parallel()
	l := NewLearner("u")
	if l.Timezone != "UTC" || l.DailyGoalXP != 20 {
		t.Fatalf("defaults: %+v", l)
	}
	l.SetProfile("Europe/Paris", 50)
	if l.Timezone != "Europe/Paris" || l.DailyGoalXP != 50 {
		t.Fatalf("set: %+v", l)
	}
	l.SetProfile("Nowhere/Land", 0)
	if l.Timezone != "UTC" || l.DailyGoalXP != 20 {
		t.Fatalf("bad values: %+v", l)
	}
}

func TestAchievementsUnlockOnce(t *testing.T) {
	t.Parallel()
	l := NewLearner("u")
	unlocked := map[string]bool{}
	ids := func(as []Achievement) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	day := Day{Date: "2025-03-10"}
	steps := []struct {
		gain Gain
		want []string
	}{
		{Gain{XP: 10, NewLesson: true, Lessons: 1}, []string{"first_lesson"}},
		{Gain{XP: 0, NewLesson: false, Lessons: 1}, nil},
		{Gain{XP: 20, NewQuizPass: true, Perfect: true}, []string{"first_quiz", "perfect_quiz", "daily_goal"}},
		{Gain{XP: 20, Perfect: true}, nil},
		{Gain{XP: 300}, []string{"level_5"}}, // 350 XP
		{Gain{XP: 650}, []string{"xp_1000"}}, // 1000 XP: level 8
		{Gain{XP: 800}, []string{"level_10"}},
	}
	for i, st := range steps {
		out := l.Apply(&day, st.gain, unlocked, testRules)
		if got := ids(out.Unlocked); !equal(got, st.want) {
			t.Fatalf("step %d: unlocked %v, want %v", i, got, st.want)
		}
	}
	for i := range 100 {
		out := l.Apply(&day, Gain{XP: 1, NewWordLearned: true, Reviews: 1}, unlocked, testRules)
		var want []string
		switch i + 1 {
		case 10:
			want = []string{"words_10"}
		case 100:
			want = []string{"words_100"}
		}
		if got := ids(out.Unlocked); !equal(got, want) {
			t.Fatalf("word %d: unlocked %v, want %v", i+1, got, want)
		}
	}
	// Seven consecutive days unlock streak_7, and only then.
	l2 := NewLearner("v")
	un2 := map[string]bool{}
	start, _ := parseDate("2025-03-01")
	for i := range 7 {
		d := Day{Date: start.AddDate(0, 0, i).Format(dateLayout)}
		out := l2.Apply(&d, Gain{XP: 1}, un2, testRules)
		has := un2["streak_7"]
		if has != (i == 6) || out.StreakNow.Current != int32(i+1) {
			t.Fatalf("day %d: streak %d, streak_7 %v", i+1, out.StreakNow.Current, has)
		}
	}
	if l2.Streak.Freezes != 1 {
		t.Fatalf("a 7-day streak holds %d freezes, want 1", l2.Streak.Freezes)
	}
	// Progress is capped at the target.
	for _, a := range Achievements {
		if p := a.Progress(l, testRules); p > a.Target || p < 0 {
			t.Errorf("%s progress %d beyond target %d", a.ID, p, a.Target)
		}
	}
}

func TestAchievementIDsAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, a := range Achievements {
		if seen[a.ID] || a.Title == "" || a.Description == "" || a.Target <= 0 {
			t.Errorf("bad or duplicate achievement %+v", a)
		}
		seen[a.ID] = true
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

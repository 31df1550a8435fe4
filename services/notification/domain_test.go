package notification

import (
	"slices"
	"testing"
	"time"

	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMessages(t *testing.T) {
	cases := []struct {
		name        string
		m           Message
		typ         Type
		title, body string
		data        map[string]string
	}{
		{"achievement", AchievementMessage("first_lesson", "First steps", "Complete your first lesson"),
			notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED,
			"Achievement unlocked: First steps", `You unlocked the achievement "First steps". Complete your first lesson.`,
			map[string]string{"achievement_id": "first_lesson"}},
		{"achievement without description", AchievementMessage("streak_7", "On fire", ""),
			notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED,
			"Achievement unlocked: On fire", `You unlocked the achievement "On fire".`, map[string]string{"achievement_id": "streak_7"}},
		{"level", LevelUpMessage(5, 4, 360), notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP,
			"Level 5!", "You reached level 5 with 360 XP in total. Keep going!",
			map[string]string{"level": "5", "previous_level": "4", "total_xp": "360"}},
		{"goal", DailyGoalMessage(30, 35, "2025-03-10"), notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED,
			"Daily goal reached", "You earned 35 XP today and reached your daily goal of 30 XP. Great work!",
			map[string]string{"goal_xp": "30", "today_xp": "35", "local_date": "2025-03-10"}},
		{"quiz", QuizPassedMessage("q1", 80, 4, 5, false), notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED,
			"Quiz passed", "You passed the quiz with a score of 80% (4 of 5 questions right).",
			map[string]string{"quiz_id": "q1", "score_percent": "80", "correct_count": "4", "question_count": "5"}},
		{"perfect quiz", QuizPassedMessage("q1", 100, 5, 5, true), notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED,
			"Quiz passed with a perfect score", "You passed the quiz with a perfect score: all 5 questions right!",
			map[string]string{"quiz_id": "q1", "score_percent": "100", "correct_count": "5", "question_count": "5"}},
		{"streak lost", StreakLostMessage(12, "2025-03-12"), notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_LOST,
			"Your streak ended", "Your 12-day streak ended because you missed a day. Start a new one today!",
			map[string]string{"streak_days": "12", "local_date": "2025-03-12"}},
		{"lesson", LessonPublishedMessage("l1", "c1", "u1", "At the market"), notificationv1.NotificationType_NOTIFICATION_TYPE_LESSON_PUBLISHED,
			"New lesson: At the market", `A new lesson, "At the market", is now available in a course you follow.`,
			map[string]string{"lesson_id": "l1", "course_id": "c1", "unit_id": "u1"}},
		{"reminder with streak", ReminderMessage("2025-03-10", 4), notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER,
			"Keep your streak going", "You haven't practised today yet. Do a short lesson to keep your 4-day streak alive!",
			map[string]string{"local_date": "2025-03-10", "streak_days": "4"}},
		{"reminder without streak", ReminderMessage("2025-03-10", 0), notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER,
			"Time to practise", "You haven't practised today yet. A short lesson is all it takes to start a streak.",
			map[string]string{"local_date": "2025-03-10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.m.Type != c.typ || c.m.Title != c.title || c.m.Body != c.body {
				t.Errorf("got %v %q %q\nwant %v %q %q", c.m.Type, c.m.Title, c.m.Body, c.typ, c.title, c.body)
			}
			if len(c.m.Data) != len(c.data) {
				t.Errorf("data %v, want %v", c.m.Data, c.data)
			}
			for k, v := range c.data {
				if c.m.Data[k] != v {
					t.Errorf("data[%s] = %q, want %q", k, c.m.Data[k], v)
				}
			}
		})
	}
}

func TestQuietHours(t *testing.T) {
	at := func(s string) int {
		m, ok := ParseClock(s)
		if !ok {
			t.Fatalf("bad clock %q", s)
		}
		return m
	}
	cases := []struct {
		q      QuietHours
		clock  string
		inside bool
	}{
		{QuietHours{"13:00", "14:00"}, "12:59", false},
		{QuietHours{"13:00", "14:00"}, "13:00", true},
		{QuietHours{"13:00", "14:00"}, "13:59", true},
		{QuietHours{"13:00", "14:00"}, "14:00", false}, // end exclusive
		// Crossing midnight.
		{QuietHours{"22:00", "07:00"}, "21:59", false},
		{QuietHours{"22:00", "07:00"}, "22:00", true},
		{QuietHours{"22:00", "07:00"}, "23:59", true},
		{QuietHours{"22:00", "07:00"}, "00:00", true},
		{QuietHours{"22:00", "07:00"}, "06:59", true},
		{QuietHours{"22:00", "07:00"}, "07:00", false},
		{QuietHours{"22:00", "07:00"}, "12:00", false},
		// None.
		{QuietHours{}, "03:00", false},
		{QuietHours{"08:00", "08:00"}, "08:00", false},
	}
	for _, c := range cases {
		if got := c.q.Contains(at(c.clock)); got != c.inside {
			t.Errorf("%+v at %s: %v, want %v", c.q, c.clock, got, c.inside)
		}
	}
	// In the learner's zone: 23:30 in Ho Chi Minh City is 16:30 UTC.
	q := QuietHours{"22:00", "07:00"}
	if !q.QuietAt("Asia/Ho_Chi_Minh", mustTime(t, "2025-03-10T16:30:00Z")) || q.QuietAt("UTC", mustTime(t, "2025-03-10T16:30:00Z")) {
		t.Error("quiet hours ignore the zone")
	}
	for _, bad := range []string{"", "7:00", "24:00", "12:60", "ab:cd", "12-00"} {
		if _, ok := ParseClock(bad); ok {
			t.Errorf("ParseClock(%q) accepted", bad)
		}
	}
}

func TestReminderDueAcrossZones(t *testing.T) {
	base := func(id, tz string) ReminderLearner {
		return ReminderLearner{UserID: id, Timezone: tz, ReminderTime: "19:00"}
	}
	// 12:00 UTC: 19:00 in Ho Chi Minh City (UTC+7), 13:00 in Paris (UTC+1 in
	// March before DST), 08:00 in New York (UTC-4 after its DST start), 01:00 the
	// next day in Auckland (UTC+13).
	now := mustTime(t, "2025-03-10T12:00:00Z")
	cases := []struct {
		name string
		l    ReminderLearner
		due  bool
		date string
	}{
		{"at reminder time", base("hcm", "Asia/Ho_Chi_Minh"), true, "2025-03-10"},
		{"before reminder time", base("paris", "Europe/Paris"), false, ""},
		{"paris at 12:00 local", ReminderLearner{UserID: "p2", Timezone: "Europe/Paris", ReminderTime: "13:00"}, true, "2025-03-10"},
		{"new york morning", ReminderLearner{UserID: "ny", Timezone: "America/New_York", ReminderTime: "08:00"}, true, "2025-03-10"},
		{"auckland next day", ReminderLearner{UserID: "akl", Timezone: "Pacific/Auckland", ReminderTime: "01:00"}, true, "2025-03-11"},
		{"default time and zone", ReminderLearner{UserID: "utc"}, false, ""},
		{"active today", func() ReminderLearner {
			l := base("a", "Asia/Ho_Chi_Minh")
			l.LastActivityDate = "2025-03-10"
			return l
		}(), false, ""},
		{"active yesterday only", func() ReminderLearner {
			l := base("y", "Asia/Ho_Chi_Minh")
			l.LastActivityDate = "2025-03-09"
			return l
		}(), true, "2025-03-10"},
		{"already reminded", func() ReminderLearner {
			l := base("r", "Asia/Ho_Chi_Minh")
			l.LastReminderDate = "2025-03-10"
			return l
		}(), false, ""},
		{"muted", func() ReminderLearner { l := base("m", "Asia/Ho_Chi_Minh"); l.ReminderMuted = true; return l }(), false, ""},
		{"quiet hours", func() ReminderLearner {
			l := base("q", "Asia/Ho_Chi_Minh")
			l.Quiet = QuietHours{"18:00", "08:00"}
			return l
		}(), false, ""},
		{"59 minutes late", ReminderLearner{UserID: "late", Timezone: "Asia/Ho_Chi_Minh", ReminderTime: "18:01"}, true, "2025-03-10"},
		{"past the window", ReminderLearner{UserID: "later", Timezone: "Asia/Ho_Chi_Minh", ReminderTime: "18:00"}, false, ""},
		{"unknown zone is UTC", ReminderLearner{UserID: "bad", Timezone: "Mars/Olympus", ReminderTime: "12:00"}, true, "2025-03-10"},
	}
	var all []ReminderLearner
	var want []Due
	for _, c := range cases {
		d, ok := ReminderDue(now, time.Hour, c.l)
		if ok != c.due || (ok && d != (Due{UserID: c.l.UserID, LocalDate: c.date})) {
			t.Errorf("%s: %+v %v, want due %v on %s", c.name, d, ok, c.due, c.date)
		}
		all = append(all, c.l)
		if c.due {
			want = append(want, Due{UserID: c.l.UserID, LocalDate: c.date})
		}
	}
	if got := DueReminders(now, time.Hour, all); !slices.Equal(got, want) {
		t.Errorf("DueReminders %v, want %v", got, want)
	}
	// The window never spills into the next local day.
	l := ReminderLearner{UserID: "x", Timezone: "UTC", ReminderTime: "23:30"}
	if _, ok := ReminderDue(mustTime(t, "2025-03-10T23:45:00Z"), time.Hour, l); !ok {
		t.Error("23:45 with reminder at 23:30: not due")
	}
	if _, ok := ReminderDue(mustTime(t, "2025-03-11T00:15:00Z"), time.Hour, l); ok {
		t.Error("00:15 the next day: due for 23:30")
	}
}

func TestPrefsApply(t *testing.T) {
	now := mustTime(t, "2025-03-10T12:00:00Z")
	str := func(s string) *string { return &s }
	p := DefaultPrefs()
	got, err := p.Apply(PrefsChange{
		Types: map[Type]bool{
			notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP:        false,
			notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER: true,
		},
		QuietStart: str("22:00"), QuietEnd: str("07:00"), ReminderTime: str("20:30"),
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Enabled(notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP) || !got.Enabled(typeReminder) ||
		got.Quiet != (QuietHours{"22:00", "07:00"}) || got.ReminderTime != "20:30" || !got.UpdatedAt.Equal(now) {
		t.Fatalf("applied %+v", got)
	}
	if len(p.Muted) != 0 {
		t.Fatal("Apply changed its receiver")
	}
	// Absent fields keep their value; both empty remove the quiet hours.
	got2, err := got.Apply(PrefsChange{QuietStart: str(""), QuietEnd: str("")}, now)
	if err != nil || got2.Quiet != (QuietHours{}) || got2.ReminderTime != "20:30" ||
		got2.Enabled(notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP) {
		t.Fatalf("second change %+v %v", got2, err)
	}
	for name, c := range map[string]PrefsChange{
		"start only":   {QuietStart: str("22:00")},
		"one empty":    {QuietStart: str("22:00"), QuietEnd: str("")},
		"equal bounds": {QuietStart: str("22:00"), QuietEnd: str("22:00")},
		"bad time":     {ReminderTime: str("25:00")},
		"bad quiet":    {QuietStart: str("2200"), QuietEnd: str("07:00")},
		"unspecified":  {Types: map[Type]bool{notificationv1.NotificationType_NOTIFICATION_TYPE_UNSPECIFIED: true}},
		"unknown type": {Types: map[Type]bool{Type(99): true}},
	} {
		if _, err := p.Apply(c, now); apperr.KindOf(err) != apperr.KindInvalid {
			t.Errorf("%s: %v, want Invalid", name, err)
		}
	}
}

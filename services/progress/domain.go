package progress

import (
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
	_ "time/tzdata" // learners' zones resolve even on hosts without a zoneinfo database
)

// Defaults of [Config]; a zero field of Config takes these.
const (
	DefaultQuizPassXP         = 20 // first pass of a quiz
	DefaultQuizPerfectBonusXP = 10 // added when that first pass is perfect
	DefaultReviewXP           = 1  // every word review
	DefaultGraduationXP       = 2  // a review that graduates a card for the first time (instead of DefaultReviewXP)
	DefaultLeaderboardSize    = 10 // top entries when the request gives no limit
	DefaultStreakFreezeEvery  = 7  // a freeze is earned at every multiple of this streak length
	DefaultMaxStreakFreezes   = 2  // freezes held at most

	DefaultTimezone    = "UTC" // until the learner's profile is known
	DefaultDailyGoalXP = 20    // until the learner's profile is known
)

// DefaultLevelThresholds is the total XP needed to reach each level: level n needs
// DefaultLevelThresholds[n-1]. Level 20 is the last.
var DefaultLevelThresholds = []int64{
	0, 50, 120, 220, 350, 520, 730, 1000, 1350, 1800,
	2350, 3000, 3800, 4750, 5850, 7100, 8500, 10000, 12000, 14500,
}

// CheckLevelThresholds accepts a table that starts at 0 and strictly increases.
func CheckLevelThresholds(t []int64) error {
	if len(t) == 0 || t[0] != 0 {
		return fmt.Errorf("progress: level thresholds must start at 0, got %v", t)
	}
	for i := 1; i < len(t); i++ {
		if t[i] <= t[i-1] {
			return fmt.Errorf("progress: level thresholds must strictly increase (level %d: %d after %d)", i+1, t[i], t[i-1])
		}
	}
	return nil
}

// LevelInfo is where a total XP stands in the level table.
type LevelInfo struct {
	Level       int32 // from 1
	XPIntoLevel int64 // XP since the level was reached
	XPForNext   int64 // XP between this level and the next; 0 at the last level
}

// LevelFor places total in thresholds (checked by [CheckLevelThresholds]).
func LevelFor(total int64, thresholds []int64) LevelInfo {
	lvl := 1
	for lvl < len(thresholds) && total >= thresholds[lvl] {
		lvl++
	}
	info := LevelInfo{Level: int32(lvl), XPIntoLevel: total - thresholds[lvl-1]}
	if lvl < len(thresholds) {
		info.XPForNext = thresholds[lvl] - thresholds[lvl-1]
	}
	return info
}

// Rules are the tunable rules of the domain functions.
type Rules struct {
	LevelThresholds []int64
	FreezeEvery     int32
	MaxFreezes      int32
}

// --- local days and UTC weeks ---

const dateLayout = "2006-01-02"

var zones sync.Map // name → *time.Location

// Location resolves an IANA zone name; unknown or empty names are UTC, so that a
// bad profile value never blocks a learner's events.
func Location(name string) *time.Location {
	if name == "" || name == "Local" {
		return time.UTC
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	zones.Store(name, l)
	return l
}

// ValidTimezone reports whether name is a zone [Location] resolves as named.
func ValidTimezone(name string) bool {
	if name == "" || name == "Local" {
		return false
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// LocalDate is the learner's calendar day (YYYY-MM-DD) at t in zone tz.
func LocalDate(tz string, t time.Time) string { return t.In(Location(tz)).Format(dateLayout) }

// parseDate reads a YYYY-MM-DD civil date as midnight UTC.
func parseDate(d string) (time.Time, error) { return time.Parse(dateLayout, d) }

// DaysBetween is the number of calendar days from a to b (negative when b is
// earlier). Civil dates, so daylight-saving changes do not matter.
func DaysBetween(a, b string) int {
	ta, err1 := parseDate(a)
	tb, err2 := parseDate(b)
	if err1 != nil || err2 != nil {
		return 0
	}
	return int(tb.Sub(ta).Hours() / 24)
}

// AddDays shifts a civil date by n days.
func AddDays(d string, n int) string {
	t, err := parseDate(d)
	if err != nil {
		return d
	}
	return t.AddDate(0, 0, n).Format(dateLayout)
}

// WeekStart is the Monday 00:00 UTC that starts the leaderboard week of t.
func WeekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

// WeekKey is the storage key of a week: its Monday (YYYY-MM-DD).
func WeekKey(t time.Time) string { return WeekStart(t).Format(dateLayout) }

// ISOWeek names the week starting at monday, e.g. "2025-W07".
func ISOWeek(monday time.Time) string {
	y, w := monday.ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

var isoWeekPattern = regexp.MustCompile(`^([0-9]{4})-W([0-9]{2})$`)

// ParseISOWeek returns the Monday 00:00 UTC of an ISO 8601 week such as
// "2025-W07"; ok is false for a malformed week or one the year does not have.
func ParseISOWeek(s string) (time.Time, bool) {
	m := isoWeekPattern.FindStringSubmatch(s)
	if m == nil {
		return time.Time{}, false
	}
	y, _ := strconv.Atoi(m[1])
	w, _ := strconv.Atoi(m[2])
	if w < 1 || w > 53 {
		return time.Time{}, false
	}
	jan4 := time.Date(y, time.January, 4, 0, 0, 0, 0, time.UTC)
	monday := WeekStart(jan4).AddDate(0, 0, 7*(w-1))
	if gy, gw := monday.ISOWeek(); gy != y || gw != w {
		return time.Time{}, false
	}
	return monday, true
}

// --- streaks ---

// Streak is a learner's run of consecutive local days with XP.
type Streak struct {
	Current  int32
	Longest  int32
	Freezes  int32
	LastDate string // last local day with XP; "" before the first
}

// StreakChange is what one day of activity did to a streak. At most one of
// Frozen and Lost is set; Extended is set whenever the day is new.
type StreakChange struct {
	Extended bool  // the day is a new streak day; Streak.Current is its length
	Frozen   bool  // a freeze was spent on FrozenDate (the one missed day)
	Kept     int32 // with Frozen: the streak length kept
	// FreezesLeft, with Frozen: freezes held right after spending one.
	FreezesLeft int32
	Lost        bool // the streak of Previous days ended; LostDate is the first missed day
	Previous    int32
	// FrozenDate or LostDate: the (first) missed day.
	MissedDate string
}

// AdvanceStreak records activity on local day date. The first activity of a new
// day extends the streak when the previous active day was yesterday; when exactly
// one day was missed and a freeze is held, the freeze is spent and the streak
// goes on; otherwise the streak is lost and a new one of 1 day starts. A freeze is
// earned each time the streak reaches a multiple of r.FreezeEvery, up to
// r.MaxFreezes held. A day already counted, or one before the last active day
// (an event that arrives late), changes nothing.
func AdvanceStreak(s Streak, date string, r Rules) (Streak, StreakChange) {
	var ch StreakChange
	if s.LastDate != "" {
		gap := DaysBetween(s.LastDate, date)
		switch {
		case gap <= 0:
			return s, ch
		case gap == 1:
			s.Current++
		case gap == 2 && s.Freezes > 0 && s.Current > 0:
			s.Freezes--
			ch.Frozen, ch.Kept, ch.MissedDate, ch.FreezesLeft = true, s.Current, AddDays(s.LastDate, 1), s.Freezes
			s.Current++
		default:
			ch.Lost, ch.Previous, ch.MissedDate = true, s.Current, AddDays(s.LastDate, 1)
			s.Current = 1
		}
	} else {
		s.Current = 1
	}
	s.LastDate = date
	ch.Extended = true
	if s.Current > s.Longest {
		s.Longest = s.Current
	}
	if r.FreezeEvery > 0 && s.Current%r.FreezeEvery == 0 && s.Freezes < r.MaxFreezes {
		s.Freezes++
	}
	return s, ch
}

// CurrentOn is the streak as shown on local day today: alive while the last
// active day is today or yesterday, or the day before yesterday when a freeze
// would save the missed day; otherwise 0.
func (s Streak) CurrentOn(today string) int32 {
	if s.LastDate == "" {
		return 0
	}
	switch gap := DaysBetween(s.LastDate, today); {
	case gap <= 1:
		return s.Current
	case gap == 2 && s.Freezes > 0:
		return s.Current
	}
	return 0
}

// --- learners ---

// Learner is everything the service knows about one learner, built from events.
type Learner struct {
	UserID       string
	Timezone     string
	DailyGoalXP  int32
	TotalXP      int64
	Streak       Streak
	Lessons      int32 // distinct lessons completed
	QuizzesPass  int32 // distinct quizzes passed
	Perfect      int32 // perfect quiz submissions
	WordsLearned int32 // distinct cards graduated
	Mastered     int32 // distinct cards mastered
	GoalsReached int32 // local days whose daily goal was reached
	Correct      int64 // correct answers over lessons and quizzes
	Graded       int64 // graded answers over lessons and quizzes
}

// NewLearner is a learner before any profile is known: UTC, a 20 XP goal.
func NewLearner(id string) Learner {
	return Learner{UserID: id, Timezone: DefaultTimezone, DailyGoalXP: DefaultDailyGoalXP}
}

// Level is the learner's level under thresholds.
func (l Learner) Level(thresholds []int64) int32 { return LevelFor(l.TotalXP, thresholds).Level }

// Accuracy is the share of correct answers, 0 when there are none.
func (l Learner) Accuracy() float64 {
	if l.Graded <= 0 {
		return 0
	}
	return float64(l.Correct) / float64(l.Graded)
}

// SetProfile applies the zone and goal of a user event; an unknown zone falls
// back to UTC and a goal of 0 (or less) to the default.
func (l *Learner) SetProfile(tz string, goal int32) {
	if !ValidTimezone(tz) {
		tz = DefaultTimezone
	}
	if goal <= 0 {
		goal = DefaultDailyGoalXP
	}
	l.Timezone, l.DailyGoalXP = tz, goal
}

// Day is a learner's activity on one local day.
type Day struct {
	Date        string
	XP          int32
	Lessons     int32
	Reviews     int32
	Quizzes     int32
	GoalReached bool
}

// Gain is what one consumed event brings to a learner. The New* flags say the
// item was not counted before (the store keeps the distinct sets).
type Gain struct {
	XP                              int32
	At                              time.Time
	Lessons, Quizzes, Reviews       int32
	NewLesson, NewQuizPass, Perfect bool
	NewWordLearned, NewWordMastered bool
	Correct, Graded                 int64
}

// Outcome is every state change one [Gain] caused, in the order its events are
// published.
type Outcome struct {
	XP            int32 // > 0: XpAwarded
	TotalXP       int64
	PreviousLevel int32
	Level         int32 // > PreviousLevel: LevelUp
	Streak        StreakChange
	StreakNow     Streak
	GoalReached   bool // DailyGoalReached for Day
	Day           Day
	Unlocked      []Achievement
}

// Apply adds g to l and to day (the learner's local day of g.At) and reports what
// changed. unlocked holds the ids of the achievements the learner already has;
// the newly unlocked ones are added to it. Only XP touches the streak and the daily
// goal: a streak is extended by the first XP of a new local day.
func (l *Learner) Apply(day *Day, g Gain, unlocked map[string]bool, r Rules) Outcome {
	out := Outcome{PreviousLevel: l.Level(r.LevelThresholds)}
	if g.NewLesson {
		l.Lessons++
	}
	if g.NewQuizPass {
		l.QuizzesPass++
	}
	if g.Perfect {
		l.Perfect++
	}
	if g.NewWordLearned {
		l.WordsLearned++
	}
	if g.NewWordMastered {
		l.Mastered++
	}
	l.Correct += g.Correct
	l.Graded += g.Graded
	day.Lessons += g.Lessons
	day.Quizzes += g.Quizzes
	day.Reviews += g.Reviews
	if g.XP > 0 {
		l.TotalXP += int64(g.XP)
		out.XP = g.XP
		l.Streak, out.Streak = AdvanceStreak(l.Streak, day.Date, r)
		day.XP += g.XP
		if !day.GoalReached && day.XP >= l.DailyGoalXP {
			day.GoalReached, out.GoalReached = true, true
			l.GoalsReached++
		}
	}
	out.TotalXP, out.StreakNow, out.Day = l.TotalXP, l.Streak, *day
	out.Level = l.Level(r.LevelThresholds)
	for _, a := range Achievements {
		if !unlocked[a.ID] && a.Progress(*l, r) >= a.Target {
			unlocked[a.ID] = true
			out.Unlocked = append(out.Unlocked, a)
		}
	}
	return out
}

// --- achievements ---

// Achievement is one entry of the fixed [Achievements] table.
type Achievement struct {
	ID          string
	Title       string
	Description string
	Target      int32
	metric      func(l Learner, r Rules) int32
}

// Progress is the learner's progress toward a, capped at its target.
func (a Achievement) Progress(l Learner, r Rules) int32 { return min(a.metric(l, r), a.Target) }

func lessons(l Learner, _ Rules) int32  { return l.Lessons }
func quizzes(l Learner, _ Rules) int32  { return l.QuizzesPass }
func perfect(l Learner, _ Rules) int32  { return l.Perfect }
func streak(l Learner, _ Rules) int32   { return l.Streak.Longest }
func words(l Learner, _ Rules) int32    { return l.WordsLearned }
func mastered(l Learner, _ Rules) int32 { return l.Mastered }
func goals(l Learner, _ Rules) int32    { return l.GoalsReached }
func level(l Learner, r Rules) int32    { return l.Level(r.LevelThresholds) }
func xpMetric(l Learner, _ Rules) int32 { return int32(min(l.TotalXP, 1<<30)) }

// Achievements is the fixed table, in display order. Each is unlocked once per
// learner, when its metric reaches its target.
var Achievements = []Achievement{
	{"first_lesson", "First steps", "Complete your first lesson", 1, lessons},
	{"lessons_10", "Bookworm", "Complete 10 different lessons", 10, lessons},
	{"first_quiz", "Quiz taker", "Pass your first quiz", 1, quizzes},
	{"perfect_quiz", "Flawless", "Answer every question of a quiz correctly", 1, perfect},
	{"daily_goal", "Goal getter", "Reach your daily XP goal", 1, goals},
	{"streak_7", "On fire", "Keep a 7-day streak", 7, streak},
	{"streak_30", "Unstoppable", "Keep a 30-day streak", 30, streak},
	{"words_10", "Word collector", "Learn 10 words", 10, words},
	{"words_100", "Wordsmith", "Learn 100 words", 100, words},
	{"mastered_10", "Word master", "Master 10 words", 10, mastered},
	{"level_5", "Rising star", "Reach level 5", 5, level},
	{"level_10", "High flyer", "Reach level 10", 10, level},
	{"xp_1000", "XP hunter", "Earn 1,000 XP", 1000, xpMetric},
}

// QuizXP is the XP of a quiz submission: passXP (plus perfectBonus when perfect)
// for the first attempt that passes the quiz, nothing otherwise, so that quiz XP
// is earned once per quiz.
func QuizXP(passXP, perfectBonus int32, firstPass, perfect bool) int32 {
	if !firstPass {
		return 0
	}
	if perfect {
		return passXP + perfectBonus
	}
	return passXP
}

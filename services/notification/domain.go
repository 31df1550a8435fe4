package notification

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // learners' zones resolve even on hosts without a zoneinfo database

	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
)

// Defaults.
const (
	DefaultTimezone     = "UTC"   // until the learner's profile is known
	DefaultReminderTime = "19:00" // the daily streak reminder, local time
	// DefaultReminderWindow is how late after the reminder time a reminder still
	// goes out (the loop was down, quiet hours just ended): later that day it is
	// skipped rather than sent at an odd hour.
	DefaultReminderWindow = time.Hour
)

const dateLayout = "2006-01-02"

// Type is a notification type (the proto enum, used as is in the domain: it is
// the stored value and the preference key).
type Type = notificationv1.NotificationType

// Types lists every notification type in the enum's order.
var Types = []Type{
	notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED,
	notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP,
	notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED,
	notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED,
	notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_LOST,
	notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER,
	notificationv1.NotificationType_NOTIFICATION_TYPE_LESSON_PUBLISHED,
}

// Message is what a notification says: its type, title, body and data.
type Message struct {
	Type  Type
	Title string
	Body  string
	Data  map[string]string
}

func itoa[T ~int32 | ~int64 | ~int](v T) string { return strconv.FormatInt(int64(v), 10) }

// sentence ends s with a period unless it ends with punctuation already.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s[len(s)-1:], ".!?") {
		return s
	}
	return s + "."
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return itoa(n) + " " + many
}

// AchievementMessage is the notification of an unlocked achievement.
func AchievementMessage(id, title, description string) Message {
	if title == "" {
		title = id
	}
	body := fmt.Sprintf("You unlocked the achievement %q.", title)
	if d := sentence(description); d != "" {
		body += " " + d
	}
	return Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_ACHIEVEMENT_UNLOCKED,
		Title: "Achievement unlocked: " + title, Body: body,
		Data: map[string]string{"achievement_id": id},
	}
}

// LevelUpMessage is the notification of a new level.
func LevelUpMessage(level, previous int32, totalXP int64) Message {
	return Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_LEVEL_UP,
		Title: fmt.Sprintf("Level %d!", level),
		Body:  fmt.Sprintf("You reached level %d with %d XP in total. Keep going!", level, totalXP),
		Data:  map[string]string{"level": itoa(level), "previous_level": itoa(previous), "total_xp": itoa(totalXP)},
	}
}

// DailyGoalMessage is the notification of a daily goal reached.
func DailyGoalMessage(goalXP, todayXP int32, date string) Message {
	return Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_DAILY_GOAL_REACHED,
		Title: "Daily goal reached",
		Body:  fmt.Sprintf("You earned %d XP today and reached your daily goal of %d XP. Great work!", todayXP, goalXP),
		Data:  map[string]string{"goal_xp": itoa(goalXP), "today_xp": itoa(todayXP), "local_date": date},
	}
}

// QuizPassedMessage is the notification of a passed quiz.
func QuizPassedMessage(quizID string, scorePercent, correct, total int32, perfect bool) Message {
	body := fmt.Sprintf("You passed the quiz with a score of %d%% (%d of %s right).", scorePercent, correct,
		plural(int64(total), "question", "questions"))
	title := "Quiz passed"
	if perfect {
		title = "Quiz passed with a perfect score"
		body = fmt.Sprintf("You passed the quiz with a perfect score: all %s right!", plural(int64(total), "question", "questions"))
		if total == 1 {
			body = "You passed the quiz with a perfect score: 1 question, 1 right!"
		}
	}
	return Message{
		Type: notificationv1.NotificationType_NOTIFICATION_TYPE_QUIZ_PASSED, Title: title, Body: body,
		Data: map[string]string{"quiz_id": quizID, "score_percent": itoa(scorePercent),
			"correct_count": itoa(correct), "question_count": itoa(total)},
	}
}

// StreakLostMessage is the notification of an ended streak.
func StreakLostMessage(previousDays int32, missedDate string) Message {
	return Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_LOST,
		Title: "Your streak ended",
		Body:  fmt.Sprintf("Your %d-day streak ended because you missed a day. Start a new one today!", previousDays),
		Data:  map[string]string{"streak_days": itoa(previousDays), "local_date": missedDate},
	}
}

// LessonPublishedMessage is the notification of a new lesson in a course the
// learner follows.
func LessonPublishedMessage(lessonID, courseID, unitID, title string) Message {
	if title == "" {
		title = "a new lesson"
	}
	return Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_LESSON_PUBLISHED,
		Title: "New lesson: " + title,
		Body:  fmt.Sprintf("A new lesson, %q, is now available in a course you follow.", title),
		Data:  map[string]string{"lesson_id": lessonID, "course_id": courseID, "unit_id": unitID},
	}
}

// ReminderMessage is the daily streak reminder on date. streakDays is the
// streak that today's activity would extend (0: none to keep).
func ReminderMessage(date string, streakDays int32) Message {
	m := Message{
		Type:  notificationv1.NotificationType_NOTIFICATION_TYPE_STREAK_REMINDER,
		Title: "Time to practise",
		Body:  "You haven't practised today yet. A short lesson is all it takes to start a streak.",
		Data:  map[string]string{"local_date": date},
	}
	if streakDays > 0 {
		m.Title = "Keep your streak going"
		m.Body = fmt.Sprintf("You haven't practised today yet. Do a short lesson to keep your %d-day streak alive!", streakDays)
		m.Data["streak_days"] = itoa(streakDays)
	}
	return m
}

// --- time of day, zones, quiet hours ----------------------------------------

var zones sync.Map // name → *time.Location

// Location resolves an IANA zone; unknown or empty names are UTC.
func Location(tz string) *time.Location {
	if tz == "" {
		return time.UTC
	}
	if l, ok := zones.Load(tz); ok {
		return l.(*time.Location)
	}
	l, err := time.LoadLocation(tz)
	if err != nil {
		l = time.UTC
	}
	zones.Store(tz, l)
	return l
}

// ValidTimezone reports whether tz names a zone [Location] resolves.
func ValidTimezone(tz string) bool {
	if tz == "" {
		return false
	}
	_, err := time.LoadLocation(tz)
	return err == nil
}

// LocalDate is the learner's calendar day at t.
func LocalDate(tz string, t time.Time) string { return t.In(Location(tz)).Format(dateLayout) }

// ParseClock parses "HH:MM" into minutes after midnight.
func ParseClock(s string) (int, bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, false
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	if err1 != nil || err2 != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, false
	}
	return h*60 + m, true
}

// minuteOfDay is t's local minutes after midnight in loc.
func minuteOfDay(t time.Time, loc *time.Location) int {
	l := t.In(loc)
	return l.Hour()*60 + l.Minute()
}

// QuietHours is a daily window, "HH:MM" local, end exclusive; an end before
// the start means the window crosses midnight. Empty (or equal) bounds mean
// no quiet hours.
type QuietHours struct{ Start, End string }

// Contains reports whether the local time of day minute (after midnight)
// falls inside the window.
func (q QuietHours) Contains(minute int) bool {
	s, ok1 := ParseClock(q.Start)
	e, ok2 := ParseClock(q.End)
	switch {
	case !ok1 || !ok2 || s == e:
		return false
	case s < e:
		return minute >= s && minute < e
	default: // crosses midnight
		return minute >= s || minute < e
	}
}

// QuietAt reports whether t falls in the quiet hours in zone tz.
func (q QuietHours) QuietAt(tz string, t time.Time) bool {
	return q.Contains(minuteOfDay(t, Location(tz)))
}

// --- preferences -------------------------------------------------------------

// Prefs are a learner's notification preferences and the profile they depend on.
type Prefs struct {
	Timezone     string
	ReminderTime string
	Quiet        QuietHours
	Muted        map[Type]bool
	UpdatedAt    time.Time // zero: the defaults
}

// DefaultPrefs are the preferences of a learner who never changed any.
func DefaultPrefs() Prefs {
	return Prefs{Timezone: DefaultTimezone, ReminderTime: DefaultReminderTime, Muted: map[Type]bool{}}
}

// Enabled reports whether notifications of type t are created.
func (p Prefs) Enabled(t Type) bool { return !p.Muted[t] }

// PrefsChange is an UpdatePreferences request in domain terms: nil fields keep
// their value.
type PrefsChange struct {
	Types        map[Type]bool // type → enabled
	QuietStart   *string
	QuietEnd     *string
	ReminderTime *string
}

// Apply checks c and applies it to p (the request's shape is validated by the
// proto rules already; this checks what they cannot, and again what direct
// callers might get wrong).
func (p Prefs) Apply(c PrefsChange, now time.Time) (Prefs, error) {
	out := p
	out.Muted = make(map[Type]bool, len(p.Muted))
	for k, v := range p.Muted {
		out.Muted[k] = v
	}
	for t, enabled := range c.Types {
		if _, known := notificationv1.NotificationType_name[int32(t)]; !known || t == notificationv1.NotificationType_NOTIFICATION_TYPE_UNSPECIFIED {
			return p, apperr.Invalid("types", "TYPE_INVALID", fmt.Sprintf("notification type %d does not exist", t))
		}
		if enabled {
			delete(out.Muted, t)
		} else {
			out.Muted[t] = true
		}
	}
	if (c.QuietStart == nil) != (c.QuietEnd == nil) {
		return p, apperr.Invalid("quiet_hours_start", "QUIET_HOURS_PAIR", "quiet_hours_start and quiet_hours_end must be set together")
	}
	if c.QuietStart != nil {
		s, e := *c.QuietStart, *c.QuietEnd
		if (s == "") != (e == "") {
			return p, apperr.Invalid("quiet_hours_start", "QUIET_HOURS_PAIR", "quiet_hours_start and quiet_hours_end must both be times or both be empty")
		}
		if s != "" {
			if _, ok := ParseClock(s); !ok {
				return p, apperr.Invalid("quiet_hours_start", "TIME_INVALID", fmt.Sprintf("quiet_hours_start %q is not a time HH:MM", s))
			}
			if _, ok := ParseClock(e); !ok {
				return p, apperr.Invalid("quiet_hours_end", "TIME_INVALID", fmt.Sprintf("quiet_hours_end %q is not a time HH:MM", e))
			}
			if s == e {
				return p, apperr.Invalid("quiet_hours_end", "QUIET_HOURS_EMPTY", "quiet_hours_end must differ from quiet_hours_start")
			}
		}
		out.Quiet = QuietHours{Start: s, End: e}
	}
	if c.ReminderTime != nil {
		if _, ok := ParseClock(*c.ReminderTime); !ok {
			return p, apperr.Invalid("reminder_time", "TIME_INVALID", fmt.Sprintf("reminder_time %q is not a time HH:MM", *c.ReminderTime))
		}
		out.ReminderTime = *c.ReminderTime
	}
	out.UpdatedAt = now
	return out, nil
}

// --- the streak reminder ---------------------------------------------------------

// ReminderLearner is what deciding on a learner's reminder needs.
type ReminderLearner struct {
	UserID           string
	Timezone         string
	ReminderTime     string // "HH:MM" local; "" is DefaultReminderTime
	Quiet            QuietHours
	ReminderMuted    bool
	LastActivityDate string // latest local day with activity ("" none)
	LastReminderDate string // latest local day a reminder was sent ("" none)
}

// Due is a reminder to send: to whom, for which local day.
type Due struct {
	UserID    string
	LocalDate string
}

// ReminderDue decides one learner's reminder at now: it is due on the
// learner's local day when the local time is at or after their reminder time
// and less than window after it (never past midnight), they had no activity
// that day, no reminder went out that day, the type is not muted and it is
// not quiet hours.
func ReminderDue(now time.Time, window time.Duration, l ReminderLearner) (Due, bool) {
	if l.ReminderMuted {
		return Due{}, false
	}
	loc := Location(l.Timezone)
	date := now.In(loc).Format(dateLayout)
	if l.LastActivityDate >= date || l.LastReminderDate >= date {
		return Due{}, false // active today (a later date only comes from a zone change)
	}
	rt := l.ReminderTime
	if rt == "" {
		rt = DefaultReminderTime
	}
	at, ok := ParseClock(rt)
	if !ok {
		return Due{}, false
	}
	minute := minuteOfDay(now, loc)
	if window <= 0 {
		window = DefaultReminderWindow
	}
	if minute < at || minute >= at+int(window/time.Minute) || l.Quiet.Contains(minute) {
		return Due{}, false
	}
	return Due{UserID: l.UserID, LocalDate: date}, true
}

// DueReminders returns the reminders due at now, in the order of learners.
func DueReminders(now time.Time, window time.Duration, learners []ReminderLearner) []Due {
	var out []Due
	for _, l := range learners {
		if d, ok := ReminderDue(now, window, l); ok {
			out = append(out, d)
		}
	}
	return out
}

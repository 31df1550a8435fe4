package analytics

import (
	"fmt"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// dateLayout is the layout of every day key: a UTC date.
const dateLayout = "2006-01-02"

// Limits of the overview and of client batches.
const (
	// MaxSpanDays is the longest overview span.
	MaxSpanDays = 366
	// DefaultSpanDays is the span when from is empty.
	DefaultSpanDays = 30
	// DefaultMaxBatchBytes caps the encoded size of one IngestEvents batch.
	DefaultMaxBatchBytes = 256 << 10
	// ClientEventMaxAge is how old a client event may be.
	ClientEventMaxAge = 30 * 24 * time.Hour
	// ClientEventMaxSkew is how far in the future a client clock may be.
	ClientEventMaxSkew = 5 * time.Minute
)

// Day returns the UTC day key of t.
func Day(t time.Time) string { return t.UTC().Format(dateLayout) }

// AddDays returns the day key n days after day (n may be negative). day must
// be a valid key.
func AddDays(day string, n int) string {
	t, err := time.Parse(dateLayout, day)
	if err != nil {
		return day
	}
	return t.AddDate(0, 0, n).Format(dateLayout)
}

// DaysBetween returns the days from from to to, inclusive, oldest first.
func DaysBetween(from, to string) []string {
	var out []string
	for d := from; d <= to; d = AddDays(d, 1) {
		out = append(out, d)
	}
	return out
}

// Span resolves an overview request's from and to (either may be empty) to
// valid day keys: to defaults to today, from to 29 days before to; the span is
// at most [MaxSpanDays].
func Span(from, to string, now time.Time) (string, string, error) {
	if to == "" {
		to = Day(now)
	} else if !validDay(to) {
		return "", "", apperr.Invalid("to", "DATE_INVALID", fmt.Sprintf("to %q is not a calendar date (YYYY-MM-DD)", to))
	}
	if from == "" {
		from = AddDays(to, -(DefaultSpanDays - 1))
	} else if !validDay(from) {
		return "", "", apperr.Invalid("from", "DATE_INVALID", fmt.Sprintf("from %q is not a calendar date (YYYY-MM-DD)", from))
	}
	if from > to {
		return "", "", apperr.Invalid("from", "SPAN_INVALID", "from must not be after to")
	}
	if AddDays(from, MaxSpanDays-1) < to {
		return "", "", apperr.Invalid("from", "SPAN_TOO_LONG", fmt.Sprintf("the span is at most %d days", MaxSpanDays))
	}
	return from, to, nil
}

func validDay(s string) bool {
	t, err := time.Parse(dateLayout, s)
	return err == nil && t.Format(dateLayout) == s
}

// Activity is the set of (learner, day) pairs with activity.
type Activity map[string]map[string]bool // day → user ids

// Add records that user was active on day.
func (a Activity) Add(user, day string) {
	if a[day] == nil {
		a[day] = map[string]bool{}
	}
	a[day][user] = true
}

// Active reports whether user was active on day.
func (a Activity) Active(user, day string) bool { return a[day][user] }

// ActiveCounts are the distinct active learners of a day and of the 7 and 30
// days ending with it.
type ActiveCounts struct{ Daily, Weekly, Monthly int64 }

// ActiveOn counts DAU, WAU and MAU for day.
func (a Activity) ActiveOn(day string) ActiveCounts {
	week, month := map[string]bool{}, map[string]bool{}
	for i := range 30 {
		for u := range a[AddDays(day, -i)] {
			month[u] = true
			if i < 7 {
				week[u] = true
			}
		}
	}
	return ActiveCounts{Daily: int64(len(a[day])), Weekly: int64(len(week)), Monthly: int64(len(month))}
}

// Cohort is the retention of the learners who registered on one day.
type Cohort struct {
	Date                 string
	Size                 int64
	Day1, Day7           int64
	Day1Rate, Day7Rate   float64
	Day1Ended, Day7Ended bool
}

// Retention computes one cohort per day of days from the registration days of
// learners (user → day) and their activity. A learner is retained on day N
// when active on the Nth day after registering; a rate stays 0 until that day
// has ended (today is after it).
func Retention(days []string, registered map[string]string, act Activity, today string) []Cohort {
	byDay := map[string][]string{}
	for u, d := range registered {
		byDay[d] = append(byDay[d], u)
	}
	out := make([]Cohort, 0, len(days))
	for _, d := range days {
		c := Cohort{Date: d, Size: int64(len(byDay[d]))}
		d1, d7 := AddDays(d, 1), AddDays(d, 7)
		for _, u := range byDay[d] {
			if act.Active(u, d1) {
				c.Day1++
			}
			if act.Active(u, d7) {
				c.Day7++
			}
		}
		c.Day1Ended, c.Day7Ended = today > d1, today > d7
		if c.Size > 0 && c.Day1Ended {
			c.Day1Rate = float64(c.Day1) / float64(c.Size)
		}
		if c.Size > 0 && c.Day7Ended {
			c.Day7Rate = float64(c.Day7) / float64(c.Size)
		}
		out = append(out, c)
	}
	return out
}

// Ratio is part/whole, 0 when whole is 0.
func Ratio(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// Funnel is the lesson funnel: attempts started and, of those, completed.
type Funnel struct{ Started, Completed int64 }

// Rate is completed / started (0 when none started).
func (f Funnel) Rate() float64 { return Ratio(f.Completed, f.Started) }

// Attempt is one lesson attempt as the projection knows it.
type Attempt struct {
	StartedDay string // "" when its LessonStarted has not been seen
	Completed  bool
}

// FunnelOf counts the attempts started from one day to another (inclusive),
// and of those the completed ones, whenever they completed. An attempt whose
// start was not seen is not in the funnel.
func FunnelOf(attempts []Attempt, from, to string) Funnel {
	var f Funnel
	for _, a := range attempts {
		if a.StartedDay == "" || a.StartedDay < from || a.StartedDay > to {
			continue
		}
		f.Started++
		if a.Completed {
			f.Completed++
		}
	}
	return f
}

// ClientEventCheck is what [CheckClientEvent] needs of one client event.
type ClientEventCheck struct {
	OccurredAt time.Time
}

// CheckBatch checks the domain rules of a client batch that protovalidate
// cannot: times against the service's clock and the encoded size.
func CheckBatch(events []ClientEventCheck, size, maxBytes int, now time.Time) error {
	if size > maxBytes {
		return apperr.Invalid("events", "BATCH_TOO_LARGE", fmt.Sprintf("the batch is %d bytes encoded; at most %d", size, maxBytes))
	}
	for i, e := range events {
		field := fmt.Sprintf("events[%d].occurred_at", i)
		switch {
		case e.OccurredAt.After(now.Add(ClientEventMaxSkew)):
			return apperr.Invalid(field, "OCCURRED_IN_FUTURE", "must not be in the future")
		case e.OccurredAt.Before(now.Add(-ClientEventMaxAge)):
			return apperr.Invalid(field, "OCCURRED_TOO_LONG_AGO", "must be within the last 30 days")
		}
	}
	return nil
}

package analytics

import (
	"errors"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
)

func TestSpan(t *testing.T) {
	now := time.Date(2025, 3, 20, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		from, to, wantFrom, wantTo, field string
	}{
		{"", "", "2025-02-19", "2025-03-20", ""},
		{"2025-03-01", "", "2025-03-01", "2025-03-20", ""},
		{"", "2025-01-30", "2025-01-01", "2025-01-30", ""},
		{"2025-02-30", "", "", "", "from"},
		{"", "2025-13-01", "", "", "to"},
		{"2024-01-01", "2025-03-01", "", "", "from"},
		{"2024-03-20", "2025-03-20", "2024-03-20", "2025-03-20", ""}, // 366 days
	}
	for _, c := range cases {
		f, to, err := Span(c.from, c.to, now)
		if c.field != "" {
			var ae *apperr.Error
			if !errors.As(err, &ae) || ae.Field != c.field {
				t.Errorf("Span(%q,%q) err %v, want field %s", c.from, c.to, err, c.field)
			}
			continue
		}
		if err != nil || f != c.wantFrom || to != c.wantTo {
			t.Errorf("Span(%q,%q) = %s %s %v, want %s %s", c.from, c.to, f, to, err, c.wantFrom, c.wantTo)
		}
	}
}

func TestActiveOn(t *testing.T) {
	a := Activity{}
	a.Add("u1", "2025-03-10")
	a.Add("u1", "2025-03-09")
	a.Add("u2", "2025-03-04") // 6 days before: in the week
	a.Add("u3", "2025-03-03") // 7 days before: month only
	a.Add("u4", "2025-02-09") // 29 days before: month
	a.Add("u5", "2025-02-08") // 30 days before: out
	got := a.ActiveOn("2025-03-10")
	if got != (ActiveCounts{Daily: 1, Weekly: 2, Monthly: 4}) {
		t.Fatalf("ActiveOn = %+v", got)
	}
}

func TestRetention(t *testing.T) {
	reg := map[string]string{"a": "2025-03-01", "b": "2025-03-01", "c": "2025-03-01", "d": "2025-03-02", "e": "2025-03-09"}
	act := Activity{}
	act.Add("a", "2025-03-02") // D1
	act.Add("a", "2025-03-08") // D7
	act.Add("b", "2025-03-02") // D1
	act.Add("c", "2025-03-05") // neither
	act.Add("d", "2025-03-09") // D7 of the 2nd
	act.Add("e", "2025-03-10") // D1, day 1 not ended
	got := Retention([]string{"2025-03-01", "2025-03-02", "2025-03-03", "2025-03-09"}, reg, act, "2025-03-10")
	want := []Cohort{
		{Date: "2025-03-01", Size: 3, Day1: 2, Day7: 1, Day1Rate: 2.0 / 3, Day7Rate: 1.0 / 3, Day1Ended: true, Day7Ended: true},
		{Date: "2025-03-02", Size: 1, Day1: 0, Day7: 1, Day1Rate: 0, Day7Rate: 1, Day1Ended: true, Day7Ended: true},
		{Date: "2025-03-03", Size: 0, Day1Ended: true, Day7Ended: false},
		{Date: "2025-03-09", Size: 1, Day1: 1, Day1Rate: 0, Day1Ended: false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d cohorts", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cohort %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestFunnel(t *testing.T) {
	attempts := []Attempt{
		{StartedDay: "2025-03-01", Completed: true},
		{StartedDay: "2025-03-02"},
		{StartedDay: "2025-03-03", Completed: true},
		{StartedDay: "2025-02-28", Completed: true}, // before the span
		{StartedDay: "", Completed: true},           // start not seen
	}
	f := FunnelOf(attempts, "2025-03-01", "2025-03-03")
	if f != (Funnel{Started: 3, Completed: 2}) || f.Rate() != 2.0/3 {
		t.Fatalf("funnel %+v rate %v", f, f.Rate())
	}
	if (Funnel{}).Rate() != 0 {
		t.Fatal("empty funnel rate")
	}
}

func TestCheckBatch(t *testing.T) {
	now := time.Date(2025, 3, 20, 12, 0, 0, 0, time.UTC)
	ok := []ClientEventCheck{{OccurredAt: now.Add(-time.Hour)}, {OccurredAt: now.Add(4 * time.Minute)}}
	if err := CheckBatch(ok, 100, 1000, now); err != nil {
		t.Fatal(err)
	}
	field := func(err error) string {
		var ae *apperr.Error
		if !errors.As(err, &ae) {
			return ""
		}
		return ae.Field + " " + ae.Reason
	}
	if f := field(CheckBatch(ok, 1001, 1000, now)); f != "events BATCH_TOO_LARGE" {
		t.Errorf("size: %q", f)
	}
	old := append(ok, ClientEventCheck{OccurredAt: now.Add(-31 * 24 * time.Hour)})
	if f := field(CheckBatch(old, 1, 1000, now)); f != "events[2].occurred_at OCCURRED_TOO_LONG_AGO" {
		t.Errorf("old: %q", f)
	}
	future := []ClientEventCheck{{OccurredAt: now.Add(time.Hour)}}
	if f := field(CheckBatch(future, 1, 1000, now)); f != "events[0].occurred_at OCCURRED_IN_FUTURE" {
		t.Errorf("future: %q", f)
	}
}

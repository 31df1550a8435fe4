package vocabulary

import (
	"encoding/json"
	"math"
	"os"
	"testing"
	"time"
)

// crossCheckFixture is testdata/fsrs_crosscheck.json, written by
// tools/fsrs-crosscheck/generate.mjs with ts-fsrs@5.4.2 (the reference FSRS-6).
type crossCheckFixture struct {
	Generator string `json:"generator"`
	Settings  struct {
		DesiredRetention      float64   `json:"desired_retention"`
		LearningStepsMinutes  []float64 `json:"learning_steps_minutes"`
		RelearningStepMinutes []float64 `json:"relearning_steps_minutes"`
		MaximumIntervalDays   int       `json:"maximum_interval_days"`
	} `json:"settings"`
	Histories []struct {
		Start   int64 `json:"start"`
		Reviews []struct {
			At        int64   `json:"at"`
			Rating    int     `json:"rating"`
			Elapsed   int     `json:"elapsed"`
			Due       int64   `json:"due"`
			State     int     `json:"state"` // ts-fsrs numbering: New 0 … Relearning 3
			Scheduled int     `json:"scheduled"`
			Reps      int     `json:"reps"`
			Lapses    int     `json:"lapses"`
			Step      int     `json:"step"`
			S         float64 `json:"s"`
			D         float64 `json:"d"`
		} `json:"reviews"`
	} `json:"histories"`
}

// TestFSRSCrossCheck replays every review history of the fixture through the
// Scheduler the service uses (built from DefaultConfig) and requires the
// reference's results: due dates, states, scheduled and elapsed days, reps,
// lapses and learning steps exactly, stability within 1e-6 relative and
// difficulty within 1e-6 absolute. (ts-fsrs rounds stability and difficulty to 8
// decimals after each review and carries the rounded values on; go-fsrs does not
// round, so tiny differences are expected and accumulate a little.)
func TestFSRSCrossCheck(t *testing.T) {
	raw, err := os.ReadFile("testdata/fsrs_crosscheck.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx crossCheckFixture
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	// The fixture must have been generated with the service's own settings.
	if fx.Settings.DesiredRetention != cfg.DesiredRetention || fx.Settings.MaximumIntervalDays != cfg.MaximumInterval ||
		!sameMinutes(fx.Settings.LearningStepsMinutes, cfg.LearningSteps) || !sameMinutes(fx.Settings.RelearningStepMinutes, cfg.RelearningSteps) {
		t.Fatalf("fixture settings %+v differ from DefaultConfig %+v: regenerate it (tools/fsrs-crosscheck)", fx.Settings, cfg)
	}
	sched, err := cfg.Scheduler()
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.Histories) < 1000 {
		t.Fatalf("fixture has %d histories, want at least 1000", len(fx.Histories))
	}
	var reviews int
	var maxRelS, maxAbsD float64
	failures := 0
	for h, hist := range fx.Histories {
		m := NewMemory(time.UnixMilli(hist.Start).UTC())
		for i, want := range hist.Reviews {
			if failures > 20 {
				t.Fatal("too many mismatches")
			}
			l, err := sched.Review(m, Rating(want.Rating), time.UnixMilli(want.At).UTC())
			if err != nil {
				t.Fatalf("history %d review %d: %v", h, i, err)
			}
			got := l.After
			reviews++
			relS := math.Abs(got.Stability-want.S) / math.Abs(want.S)
			absD := math.Abs(got.Difficulty - want.D)
			maxRelS, maxAbsD = math.Max(maxRelS, relS), math.Max(maxAbsD, absD)
			if got.Due.UnixMilli() != want.Due || got.State != State(want.State+1) || got.ScheduledDays != want.Scheduled ||
				got.Reps != want.Reps || got.Lapses != want.Lapses || got.Step != want.Step || l.ElapsedDays != want.Elapsed ||
				relS > 1e-6 || absD > 1e-6 {
				failures++
				t.Errorf("history %d review %d (rating %d at %s):\n got due=%s state=%s sched=%d reps=%d lapses=%d step=%d elapsed=%d S=%.10g D=%.10g\nwant due=%s state=%s sched=%d reps=%d lapses=%d step=%d elapsed=%d S=%.10g D=%.10g",
					h, i, want.Rating, time.UnixMilli(want.At).UTC().Format(time.RFC3339Nano),
					got.Due.UTC().Format(time.RFC3339Nano), got.State, got.ScheduledDays, got.Reps, got.Lapses, got.Step, l.ElapsedDays, got.Stability, got.Difficulty,
					time.UnixMilli(want.Due).UTC().Format(time.RFC3339Nano), State(want.State+1), want.Scheduled, want.Reps, want.Lapses, want.Step, want.Elapsed, want.S, want.D)
			}
			m = got // carry our own state on, as the service does
		}
	}
	t.Logf("%d histories, %d reviews replayed against %s: max stability deviation %.3g relative, max difficulty deviation %.3g",
		len(fx.Histories), reviews, fx.Generator, maxRelS, maxAbsD)
}

func sameMinutes(mins []float64, steps []time.Duration) bool {
	if len(mins) != len(steps) {
		return false
	}
	for i := range mins {
		if time.Duration(mins[i]*float64(time.Minute)) != steps[i] {
			return false
		}
	}
	return true
}

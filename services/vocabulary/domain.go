package vocabulary

import (
	"fmt"
	"math"
	"strings"
	"time"

	fsrs "github.com/open-spaced-repetition/go-fsrs/v4"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// State is the FSRS state of a card. Its numbering is the proto's
// (vocabularyv1.CardState): New 1, Learning 2, Review 3, Relearning 4.
type State int

const (
	StateNew        State = 1
	StateLearning   State = 2
	StateReview     State = 3
	StateRelearning State = 4
)

// String is the state's storage name ("new", "learning", "review", "relearning").
func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateLearning:
		return "learning"
	case StateReview:
		return "review"
	case StateRelearning:
		return "relearning"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState is the inverse of [State.String].
func ParseState(s string) (State, error) {
	for _, st := range []State{StateNew, StateLearning, StateReview, StateRelearning} {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown card state %q", s)
}

// fsrs numbers states from 0 (New) to 3 (Relearning).
func (s State) toFSRS() fsrs.State     { return fsrs.State(s - 1) }
func stateFromFSRS(s fsrs.State) State { return State(s) + 1 }

// Rating is a review grade: Again 1, Hard 2, Good 3, Easy 4 (FSRS and proto numbering).
type Rating int

const (
	RatingAgain Rating = 1
	RatingHard  Rating = 2
	RatingGood  Rating = 3
	RatingEasy  Rating = 4
)

// CheckRating refuses anything but the four grades.
func CheckRating(r Rating) error {
	if r < RatingAgain || r > RatingEasy {
		return apperr.Invalid("rating", "RATING_INVALID",
			fmt.Sprintf("rating must be RATING_AGAIN, RATING_HARD, RATING_GOOD or RATING_EASY (1 to 4), got %d", int(r)))
	}
	return nil
}

// Source is how a word came into the deck.
type Source string

const (
	SourceLesson Source = "lesson"
	SourceManual Source = "manual"
)

// MasteredDays is the interval from which a card counts as mastered: the first
// review that schedules it this many days ahead or more makes it mastered.
const MasteredDays = 21

// Memory is a card's scheduling state: what FSRS reads and writes.
type Memory struct {
	State         State
	Due           time.Time
	Stability     float64 // 0 for a new card
	Difficulty    float64 // 0 for a new card
	ElapsedDays   int     // UTC calendar days between the last two reviews
	ScheduledDays int     // days between the last review and Due
	Reps, Lapses  int
	Step          int       // index of the current (re)learning step; 0 outside learning
	LastReview    time.Time // zero for a new card
}

// NewMemory is the memory of a card added at t: new, due at once.
func NewMemory(t time.Time) Memory { return Memory{State: StateNew, Due: t} }

// Card is a word in a learner's deck.
type Card struct {
	ID, UserID            string
	Term, Translation     string
	PartOfSpeech, Example string
	ExampleTranslation    string
	AudioMediaID          string
	Source                Source
	LessonID              string // "" for a word added by hand
	Memory                Memory
	MasteredAt            *time.Time
	CreatedAt             time.Time
}

// Word is the content of a card, as given by hand or by a lesson.
type Word struct {
	Term, Translation, PartOfSpeech, Example, ExampleTranslation, AudioMediaID string
}

// NormalizeTerm trims surrounding white space and collapses inner runs of it to
// one space. Terms are otherwise compared exactly (case matters: "May" and "may"
// are different words), so UNIQUE(user_id, term) holds on the normalised form.
func NormalizeTerm(term string) string { return strings.Join(strings.Fields(term), " ") }

// NewCard checks w and returns it as a new card of userID added at now.
func NewCard(id, userID string, w Word, src Source, lessonID string, now time.Time) (Card, error) {
	term := NormalizeTerm(w.Term)
	if term == "" {
		return Card{}, apperr.Invalid("term", "TERM_BLANK", "term must not be blank")
	}
	tr := strings.TrimSpace(w.Translation)
	if tr == "" {
		return Card{}, apperr.Invalid("translation", "TRANSLATION_BLANK", "translation must not be blank")
	}
	return Card{
		ID: id, UserID: userID, Term: term, Translation: tr, PartOfSpeech: strings.TrimSpace(w.PartOfSpeech),
		Example: strings.TrimSpace(w.Example), ExampleTranslation: strings.TrimSpace(w.ExampleTranslation),
		AudioMediaID: w.AudioMediaID, Source: src, LessonID: lessonID, Memory: NewMemory(now), CreatedAt: now,
	}, nil
}

// SchedulerConfig is what shapes scheduling.
type SchedulerConfig struct {
	DesiredRetention float64         // target recall probability, in (0, 1)
	LearningSteps    []time.Duration // whole minutes, each under a day
	RelearningSteps  []time.Duration // whole minutes, each under a day
	MaximumInterval  int             // days, 1 to 36500
}

// Scheduler schedules reviews with FSRS-6 (go-fsrs/v4) with the default weights,
// short-term scheduling on and fuzz off, so that the same history always gives
// the same schedule (and the same one as ts-fsrs, see TestFSRSCrossCheck).
// It is immutable and safe for concurrent use.
type Scheduler struct {
	f                        *fsrs.FSRS
	learnSteps, relearnSteps int
}

// NewScheduler validates c and builds the scheduler. go-fsrs silently falls back
// to its default parameters when they do not validate, so they are validated here
// first and any problem is an error.
func NewScheduler(c SchedulerConfig) (*Scheduler, error) {
	if !(c.DesiredRetention > 0 && c.DesiredRetention < 1) {
		return nil, fmt.Errorf("vocabulary: desired retention must be in (0, 1), got %v", c.DesiredRetention)
	}
	if c.MaximumInterval < 1 || c.MaximumInterval > 36500 {
		return nil, fmt.Errorf("vocabulary: maximum interval must be 1 to 36500 days, got %d", c.MaximumInterval)
	}
	learn, err := stepMinutes("learning", c.LearningSteps)
	if err != nil {
		return nil, err
	}
	relearn, err := stepMinutes("relearning", c.RelearningSteps)
	if err != nil {
		return nil, err
	}
	p := fsrs.DefaultParam()
	p.RequestRetention = c.DesiredRetention
	p.MaximumInterval = float64(c.MaximumInterval)
	p.EnableFuzz = false
	p.EnableShortTerm = true
	p.LearningSteps, p.RelearningSteps = learn, relearn
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("vocabulary: FSRS parameters: %w", err)
	}
	f := fsrs.NewFSRS(p)
	// NewFSRS clips the weights and would reset everything to defaults on a
	// failed validation: make sure what we asked for is what it uses.
	if f.RequestRetention != p.RequestRetention || f.MaximumInterval != p.MaximumInterval || f.EnableFuzz ||
		len(f.LearningSteps) != len(learn) || len(f.RelearningSteps) != len(relearn) {
		return nil, fmt.Errorf("vocabulary: go-fsrs did not take the parameters")
	}
	return &Scheduler{f: f, learnSteps: len(learn), relearnSteps: len(relearn)}, nil
}

func stepMinutes(name string, steps []time.Duration) ([]float64, error) {
	out := make([]float64, len(steps))
	for i, d := range steps {
		if d <= 0 || d >= 24*time.Hour || d%time.Minute != 0 {
			return nil, fmt.Errorf("vocabulary: %s step %d is %s: steps must be whole minutes, more than 0 and under a day", name, i, d)
		}
		out[i] = float64(d / time.Minute)
	}
	return out, nil
}

// ReviewLog is one review of a card: what WordReviewed carries and the reviews
// table keeps.
type ReviewLog struct {
	Rating      Rating
	ReviewedAt  time.Time
	ElapsedDays int // UTC calendar days since the previous review; 0 for the first
	Before      Memory
	After       Memory
}

// ReachesMastery reports whether the review scheduled the card MasteredDays or
// more ahead; whether it is the first time is the caller's to know.
func (l ReviewLog) ReachesMastery() bool { return l.After.ScheduledDays >= MasteredDays }

// Review applies a rating given at `at` to m and returns the review log (with the
// new memory in After). at must not be before m.LastReview.
func (s *Scheduler) Review(m Memory, r Rating, at time.Time) (ReviewLog, error) {
	if err := CheckRating(r); err != nil {
		return ReviewLog{}, err
	}
	if !m.LastReview.IsZero() && at.Before(m.LastReview) {
		return ReviewLog{}, apperr.Invalid("reviewed_at", "REVIEWED_AT_BEFORE_LAST_REVIEW",
			fmt.Sprintf("reviewed_at %s is before the card's last review at %s", at.UTC().Format(time.RFC3339), m.LastReview.UTC().Format(time.RFC3339)))
	}
	info, err := s.f.Next(s.toFSRS(m), at, fsrs.Rating(r))
	if err != nil {
		return ReviewLog{}, fmt.Errorf("fsrs: %w", err)
	}
	log := ReviewLog{Rating: r, ReviewedAt: at, Before: m}
	if m.State != StateNew && !m.LastReview.IsZero() {
		log.ElapsedDays = UTCDaysBetween(m.LastReview, at)
	}
	log.After = s.fromFSRS(info.Card, log.ElapsedDays)
	return log, nil
}

func (s *Scheduler) toFSRS(m Memory) fsrs.Card {
	c := fsrs.Card{
		Due: m.Due, Stability: m.Stability, Difficulty: m.Difficulty, ScheduledDays: uint64(max(m.ScheduledDays, 0)),
		Reps: uint64(max(m.Reps, 0)), Lapses: uint64(max(m.Lapses, 0)), State: m.State.toFSRS(), LastReview: m.LastReview,
	}
	// go-fsrs counts the steps left; we keep the index of the current step (as
	// ts-fsrs does): remaining = len(steps) - index while (re)learning.
	switch m.State {
	case StateLearning:
		c.RemainingSteps = max(s.learnSteps-m.Step, 1)
	case StateRelearning:
		c.RemainingSteps = max(s.relearnSteps-m.Step, 1)
	}
	if s.stepsFor(m.State) == 0 {
		c.RemainingSteps = 0
	}
	return c
}

func (s *Scheduler) fromFSRS(c fsrs.Card, elapsed int) Memory {
	m := Memory{
		State: stateFromFSRS(c.State), Due: c.Due, Stability: c.Stability, Difficulty: c.Difficulty,
		ElapsedDays: elapsed, ScheduledDays: int(c.ScheduledDays), Reps: int(c.Reps), Lapses: int(c.Lapses),
		LastReview: c.LastReview,
	}
	if n := s.stepsFor(m.State); n > 0 && c.RemainingSteps > 0 {
		m.Step = n - c.RemainingSteps
	}
	return m
}

func (s *Scheduler) stepsFor(st State) int {
	switch st {
	case StateLearning:
		return s.learnSteps
	case StateRelearning:
		return s.relearnSteps
	}
	return 0
}

// UTCDaysBetween counts the UTC calendar days from a to b (0 when b is on a's
// day or before it): FSRS's elapsed days.
func UTCDaysBetween(a, b time.Time) int {
	ad := UTCDay(a)
	bd := UTCDay(b)
	if !bd.After(ad) {
		return 0
	}
	return int(math.Round(bd.Sub(ad).Hours() / 24))
}

// UTCDay is the start (00:00 UTC) of t's UTC day: the learner's "today" for the
// daily limits and counters. (The learner's own time zone lives in the user
// service; UTC days keep this service free of that dependency and match FSRS's
// elapsed days, which are UTC calendar days too.)
func UTCDay(t time.Time) time.Time {
	u := t.UTC()
	return time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
}

// DailyLimits are the study limits of one day.
type DailyLimits struct{ New, Reviews int }

// DailyCounts are what a learner studied today: first reviews of new cards, and
// reviews of cards already studied before (which the review limit counts).
type DailyCounts struct{ New, Reviews int }

// Left returns how many new cards and reviews may still be studied today.
func (l DailyLimits) Left(c DailyCounts) (newLeft, reviewsLeft int) {
	return max(l.New-c.New, 0), max(l.Reviews-c.Reviews, 0)
}

// QueueShape says how many due reviews and new cards a queue of at most limit
// cards takes, due reviews first: reviews fill the queue up to what is left of
// the review limit, new cards take the rest up to what is left of the new limit.
func QueueShape(limit, dueAvailable, newAvailable, newLeft, reviewsLeft int) (reviews, news int) {
	reviews = min(limit, dueAvailable, reviewsLeft)
	news = min(limit-reviews, newAvailable, newLeft)
	return max(reviews, 0), max(news, 0)
}

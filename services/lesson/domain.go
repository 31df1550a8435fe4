package lesson

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/services/exercise"
)

// DefaultXPReward is a lesson's reward when its author leaves it at 0.
const DefaultXPReward = 10

// State is whether learners can see a lesson.
type State string

const (
	StateDraft     State = "draft"
	StatePublished State = "published"
	StateArchived  State = "archived"
)

// Status is where a learner stands with a published lesson.
type Status int

const (
	StatusLocked     Status = iota + 1 // the lesson before it is not completed
	StatusAvailable                    // it can be started
	StatusInProgress                   // the learner has an attempt that is not completed
	StatusCompleted                    // completed at least once
)

// Course is a course: units of lessons teaching one language to speakers of another.
type Course struct {
	ID, Slug, Title, Description   string
	SourceLanguage, TargetLanguage string
	CreatedAt, UpdatedAt           time.Time
}

// Unit is a group of lessons of a course; Key is its bundle key when imported.
type Unit struct {
	ID, CourseID, Key, Title, Description string
	Position                              int32
	CreatedAt, UpdatedAt                  time.Time
}

// Word is a word or phrase a lesson introduces.
type Word struct {
	Term, Translation, PartOfSpeech, Example, ExampleTranslation, AudioMediaID string
}

// Lesson is the lesson aggregate. Exercises are the content protos (with their
// answers): their kinds are graded, viewed and checked by services/exercise, and
// their Id and Position fields are kept in step with the stored rows.
type Lesson struct {
	ID, CourseID, UnitID, Key, Title, Description string
	Position, XPReward                            int32
	Words                                         []Word
	Exercises                                     []*lessonv1.Exercise
	State                                         State
	CreatedAt, UpdatedAt                          time.Time
	PublishedAt                                   *time.Time
}

// Attempt is one go of a learner at a lesson. The completion fields are set once
// CompletedAt is.
type Attempt struct {
	ID, UserID, LessonID string
	StartedAt            time.Time
	CompletedAt          *time.Time
	Score                int32
	Accuracy             float64
	CorrectCount         int32
	ExerciseCount        int32
	XPAwarded            int32
}

// AnswerRecord is the grading of the first answer to one exercise of an attempt.
type AnswerRecord struct {
	ExerciseID, Expected, Explanation string
	Correct                           bool
	AnsweredAt                        time.Time
}

// CourseInput is what an author gives for a new course.
type CourseInput struct {
	Slug, Title, Description, SourceLanguage, TargetLanguage string
}

// NewCourse checks in and returns the course to store.
func NewCourse(id string, in CourseInput, now time.Time) (Course, error) {
	c := Course{
		ID: id, Slug: in.Slug, Title: strings.TrimSpace(in.Title), Description: strings.TrimSpace(in.Description),
		SourceLanguage: in.SourceLanguage, TargetLanguage: in.TargetLanguage, CreatedAt: now, UpdatedAt: now,
	}
	return c, c.check()
}

func (c Course) check() error {
	if c.Title == "" {
		return apperr.Invalid("title", "TITLE_BLANK", "title must not be blank")
	}
	if c.SourceLanguage == "" || c.TargetLanguage == "" {
		return apperr.Invalid("source_language", "LANGUAGE_REQUIRED", "source_language and target_language are required")
	}
	if c.SourceLanguage == c.TargetLanguage {
		return apperr.Invalid("target_language", "SAME_LANGUAGE", "target_language must differ from source_language")
	}
	return nil
}

// CoursePatch is a partial update of a course: nil fields stay as they are.
type CoursePatch struct{ Title, Description, SourceLanguage, TargetLanguage *string }

// Apply changes c by p and reports whether anything changed.
func (c *Course) Apply(p CoursePatch, now time.Time) (bool, error) {
	next := *c
	setTrimmed(&next.Title, p.Title)
	setTrimmed(&next.Description, p.Description)
	setTrimmed(&next.SourceLanguage, p.SourceLanguage)
	setTrimmed(&next.TargetLanguage, p.TargetLanguage)
	if err := next.check(); err != nil {
		return false, err
	}
	if next == *c {
		return false, nil
	}
	next.UpdatedAt = now
	*c = next
	return true, nil
}

func setTrimmed(dst *string, v *string) {
	if v != nil {
		*dst = strings.TrimSpace(*v)
	}
}

// CheckTitle refuses blank titles.
func CheckTitle(title string) error {
	if strings.TrimSpace(title) == "" {
		return apperr.Invalid("title", "TITLE_BLANK", "title must not be blank")
	}
	return nil
}

// XPReward applies the default: 0 means [DefaultXPReward].
func XPReward(v int32) int32 {
	if v <= 0 {
		return DefaultXPReward
	}
	return v
}

// CheckWords refuses blank terms or translations and terms repeated (compared
// case-insensitively, spaces trimmed). field prefixes the error's field, e.g.
// "words" → "words[2].term".
func CheckWords(field string, words []Word) error {
	if len(words) > 50 {
		return apperr.Invalid(field, "TOO_MANY_WORDS", fmt.Sprintf("a lesson introduces at most 50 words, not %d", len(words)))
	}
	seen := make(map[string]int, len(words))
	for i, w := range words {
		f := fmt.Sprintf("%s[%d]", field, i)
		term := strings.ToLower(strings.TrimSpace(w.Term))
		if term == "" {
			return apperr.Invalid(f+".term", "WORD_TERM_BLANK", "the term must not be blank")
		}
		if strings.TrimSpace(w.Translation) == "" {
			return apperr.Invalid(f+".translation", "WORD_TRANSLATION_BLANK", fmt.Sprintf("the translation of %q must not be blank", w.Term))
		}
		if j, dup := seen[term]; dup {
			return apperr.Invalid(f+".term", "WORD_DUPLICATE", fmt.Sprintf("term %q is already word %d of the lesson", w.Term, j))
		}
		seen[term] = i
	}
	return nil
}

// CheckExercises runs [exercise.Validate] on each exercise and names the one at
// fault in the error's field, e.g. "exercises[3].translate.prompt".
func CheckExercises(field string, exs []*lessonv1.Exercise) error {
	if len(exs) > 50 {
		return apperr.Invalid(field, "TOO_MANY_EXERCISES", fmt.Sprintf("a lesson has at most 50 exercises, not %d", len(exs)))
	}
	for i, ex := range exs {
		if err := exercise.Validate(ex); err != nil {
			return prefixField(fmt.Sprintf("%s[%d]", field, i), err)
		}
	}
	return nil
}

// prefixField returns err with its apperr field placed under prefix.
func prefixField(prefix string, err error) error {
	e, ok := apperr.As(err)
	if !ok {
		return err
	}
	out := *e
	out.Field = prefix
	if e.Field != "" {
		out.Field += "." + e.Field
	}
	out.Message = prefix + ": " + e.Message
	return &out
}

// PlanExercises returns the exercises of a lesson after an update that sends
// incoming: an exercise with the id of one of the lesson's exercises (existing)
// keeps it, one with an empty id gets newID(), any other id is refused. Positions
// are set from the order of the list. incoming is not modified.
func PlanExercises(existing []string, incoming []*lessonv1.Exercise, newID func() string) ([]*lessonv1.Exercise, error) {
	own := make(map[string]bool, len(existing))
	for _, id := range existing {
		own[id] = true
	}
	used := make(map[string]int, len(incoming))
	out := make([]*lessonv1.Exercise, len(incoming))
	for i, in := range incoming {
		ex := proto.Clone(in).(*lessonv1.Exercise)
		f := fmt.Sprintf("exercises[%d].id", i)
		switch id := ex.GetId(); {
		case id == "":
			ex.Id = newID()
		case !own[id]:
			return nil, apperr.Invalid(f, "EXERCISE_NOT_IN_LESSON", fmt.Sprintf("exercise %s is not an exercise of this lesson; send an empty id for a new exercise", id))
		default:
			if j, dup := used[id]; dup {
				return nil, apperr.Invalid(f, "EXERCISE_DUPLICATE", fmt.Sprintf("exercise %s is already exercises[%d]", id, j))
			}
			used[id] = i
		}
		ex.Position = int32(i + 1)
		out[i] = ex
	}
	return out, nil
}

// ReplaceByPosition returns the exercises of a re-imported lesson: the exercise at
// each position takes the id of the lesson's exercise at that position (existing,
// in order), extra ones get newID(). Positions are set from the order.
func ReplaceByPosition(existing []string, incoming []*lessonv1.Exercise, newID func() string) []*lessonv1.Exercise {
	out := make([]*lessonv1.Exercise, len(incoming))
	for i, in := range incoming {
		ex := proto.Clone(in).(*lessonv1.Exercise)
		if i < len(existing) {
			ex.Id = existing[i]
		} else {
			ex.Id = newID()
		}
		ex.Position = int32(i + 1)
		out[i] = ex
	}
	return out
}

// Publish makes the lesson visible to learners. It reports false when it already
// was; a lesson without exercises cannot be published.
func (l *Lesson) Publish(now time.Time) (bool, error) {
	if l.State == StatePublished {
		return false, nil
	}
	if len(l.Exercises) == 0 {
		return false, apperr.New(apperr.KindFailedPrecondition, "LESSON_HAS_NO_EXERCISES", "a lesson needs at least one exercise to be published")
	}
	l.State, l.UpdatedAt, l.PublishedAt = StatePublished, now, &now
	return true, nil
}

// Archive hides the lesson from learners. It reports false when it already was.
func (l *Lesson) Archive(now time.Time) bool {
	if l.State == StateArchived {
		return false
	}
	l.State, l.UpdatedAt = StateArchived, now
	return true
}

// Move returns ids with id moved to position pos (from 1); a position past the
// end moves it to the end. ids is not modified.
func Move(ids []string, id string, pos int32) []string {
	out := slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == id })
	i := min(max(int(pos)-1, 0), len(out))
	return slices.Insert(out, i, id)
}

// Statuses computes the learner's status of each published lesson of a course,
// given in course order (unit position, then lesson position). completed holds
// the lessons the learner completed, open those with an attempt in progress.
// A completed lesson is completed; one with an open attempt is in progress
// (it was available when started: a later reordering does not lock it again);
// the first lesson is available, and each next one is available once the one
// before it is completed; the others are locked.
func Statuses(order []string, completed, open map[string]bool) []Status {
	out := make([]Status, len(order))
	for i, id := range order {
		switch {
		case completed[id]:
			out[i] = StatusCompleted
		case open[id]:
			out[i] = StatusInProgress
		case i == 0 || completed[order[i-1]]:
			out[i] = StatusAvailable
		default:
			out[i] = StatusLocked
		}
	}
	return out
}

// Score returns the share of exercises whose first answer was correct and the
// score in percent (accuracy times 100, rounded). Unanswered exercises count as
// wrong; a lesson without exercises scores 0.
func Score(correct, total int) (score int32, accuracy float64) {
	if total <= 0 {
		return 0, 0
	}
	correct = min(max(correct, 0), total)
	accuracy = float64(correct) / float64(total)
	return int32(math.Round(accuracy * 100)), accuracy
}

// CheckBundleKeys refuses a bundle whose unit keys, or lesson keys across the
// whole bundle, repeat.
func CheckBundleKeys(b *lessonv1.CourseBundle) error {
	units := map[string]int{}
	lessons := map[string]string{}
	for i, u := range b.GetUnits() {
		f := fmt.Sprintf("bundle.units[%d]", i)
		if j, dup := units[u.GetKey()]; dup {
			return apperr.Invalid(f+".key", "UNIT_KEY_DUPLICATE", fmt.Sprintf("unit key %q is already used by units[%d]", u.GetKey(), j))
		}
		units[u.GetKey()] = i
		if len(u.GetLessons()) == 0 {
			return apperr.Invalid(f+".lessons", "UNIT_HAS_NO_LESSONS", fmt.Sprintf("unit %q has no lessons", u.GetKey()))
		}
		for k, l := range u.GetLessons() {
			lf := fmt.Sprintf("%s.lessons[%d]", f, k)
			if prev, dup := lessons[l.GetKey()]; dup {
				return apperr.Invalid(lf+".key", "LESSON_KEY_DUPLICATE", fmt.Sprintf("lesson key %q is already used by %s", l.GetKey(), prev))
			}
			lessons[l.GetKey()] = lf
			if len(l.GetExercises()) == 0 {
				return apperr.Invalid(lf+".exercises", "LESSON_HAS_NO_EXERCISES", fmt.Sprintf("lesson %q has no exercises", l.GetKey()))
			}
		}
	}
	if len(units) == 0 {
		return apperr.Invalid("bundle.units", "COURSE_HAS_NO_UNITS", "the course has no units")
	}
	return nil
}

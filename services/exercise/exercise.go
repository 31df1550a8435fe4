// Package exercise grades learners' answers to exercises, hides the answers
// from learners and checks exercises written by authors. It is pure domain
// code shared by the lesson service (lesson exercises) and the quiz service
// (quiz questions are exercises): no I/O.
package exercise

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
)

// Reasons of the errors Grade returns (apperr.KindInvalid, field "answer").
const (
	// The answer is of another kind than the exercise asks for (e.g. text
	// for a multiple-choice exercise), or has no value.
	ReasonAnswerTypeMismatch = "ANSWER_TYPE_MISMATCH"
	// A choice index that is not the index of one of the choices.
	ReasonChoiceOutOfRange = "CHOICE_INDEX_OUT_OF_RANGE"
)

// Reason of the errors Validate returns (apperr.KindInvalid, field naming
// the part of the exercise at fault, e.g. "translate.accepted_answers[1]").
const ReasonInvalidExercise = "INVALID_EXERCISE"

// Result is the grading of one answer.
type Result struct {
	// Whether the answer is correct.
	Correct bool
	// The expected answer as text: see Expected.
	Expected string
	// The exercise's explanation; may be empty.
	Explanation string
}

// Grade grades ans against ex. Free text (translate, fill in the blank,
// listen) is correct when it equals one of the accepted answers after
// Normalize (accents ignored only for a translate exercise with
// accents_optional); a multiple choice when the index is the correct one;
// match pairs when the answer holds exactly the exercise's pairs, in any
// order (compared after Normalize, accents included).
//
// An answer of the wrong kind is an apperr.Invalid on field "answer" with
// reason ReasonAnswerTypeMismatch, a choice index outside the choices one
// with ReasonChoiceOutOfRange. An exercise with no kind is an internal
// error (stored content is checked when written).
func Grade(ex *lessonv1.Exercise, ans *lessonv1.Answer) (Result, error) {
	res := Result{Expected: Expected(ex), Explanation: ex.GetExplanation()}
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		v, ok := ans.GetValue().(*lessonv1.Answer_ChoiceIndex)
		if !ok {
			return Result{}, mismatch("a choice_index", ans)
		}
		if v.ChoiceIndex < 0 || int(v.ChoiceIndex) >= len(k.MultipleChoice.GetChoices()) {
			return Result{}, apperr.Invalid("answer", ReasonChoiceOutOfRange,
				fmt.Sprintf("choice_index %d is out of range: the exercise has %d choices (0 to %d)",
					v.ChoiceIndex, len(k.MultipleChoice.GetChoices()), len(k.MultipleChoice.GetChoices())-1))
		}
		res.Correct = v.ChoiceIndex == k.MultipleChoice.GetCorrectIndex()
	case *lessonv1.Exercise_Translate:
		t, err := textOf(ans)
		if err != nil {
			return Result{}, err
		}
		res.Correct = matchesAny(t, k.Translate.GetAcceptedAnswers(), k.Translate.GetAccentsOptional())
	case *lessonv1.Exercise_FillBlank:
		t, err := textOf(ans)
		if err != nil {
			return Result{}, err
		}
		res.Correct = matchesAny(t, k.FillBlank.GetAcceptedAnswers(), false)
	case *lessonv1.Exercise_Listen:
		t, err := textOf(ans)
		if err != nil {
			return Result{}, err
		}
		res.Correct = matchesAny(t, k.Listen.GetAcceptedAnswers(), false)
	case *lessonv1.Exercise_MatchPairs:
		v, ok := ans.GetValue().(*lessonv1.Answer_Pairs)
		if !ok {
			return Result{}, mismatch("pairs", ans)
		}
		res.Correct = pairsMatch(k.MatchPairs.GetPairs(), v.Pairs.GetPairs())
	default:
		return Result{}, fmt.Errorf("exercise %q has no kind", ex.GetId())
	}
	return res, nil
}

// Expected returns the expected answer of ex as text, as shown after an
// answer (and in quiz feedback, also for unanswered questions): the correct
// choice, the first accepted answer, or the pairs as
// "left = right; left = right". Empty for an exercise with no kind.
func Expected(ex *lessonv1.Exercise) string {
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		c := k.MultipleChoice.GetChoices()
		i := k.MultipleChoice.GetCorrectIndex()
		if i >= 0 && int(i) < len(c) {
			return c[i]
		}
	case *lessonv1.Exercise_Translate:
		return first(k.Translate.GetAcceptedAnswers())
	case *lessonv1.Exercise_FillBlank:
		return first(k.FillBlank.GetAcceptedAnswers())
	case *lessonv1.Exercise_Listen:
		return first(k.Listen.GetAcceptedAnswers())
	case *lessonv1.Exercise_MatchPairs:
		parts := make([]string, 0, len(k.MatchPairs.GetPairs()))
		for _, p := range k.MatchPairs.GetPairs() {
			parts = append(parts, p.GetLeft()+" = "+p.GetRight())
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// answerKind names the kind of an answer, for error messages.
func answerKind(ans *lessonv1.Answer) string {
	switch ans.GetValue().(type) {
	case *lessonv1.Answer_ChoiceIndex:
		return "a choice_index"
	case *lessonv1.Answer_Text:
		return "text"
	case *lessonv1.Answer_Pairs:
		return "pairs"
	}
	return "no answer"
}

func mismatch(want string, ans *lessonv1.Answer) error {
	return apperr.Invalid("answer", ReasonAnswerTypeMismatch,
		fmt.Sprintf("this exercise is answered with %s, not %s", want, answerKind(ans)))
}

func textOf(ans *lessonv1.Answer) (string, error) {
	v, ok := ans.GetValue().(*lessonv1.Answer_Text)
	if !ok {
		return "", mismatch("text", ans)
	}
	return v.Text, nil
}

func matchesAny(text string, accepted []string, stripAccents bool) bool {
	got := Normalize(text, stripAccents)
	if got == "" {
		return false
	}
	for _, a := range accepted {
		if Normalize(a, stripAccents) == got {
			return true
		}
	}
	return false
}

type pairKey struct{ left, right string }

func normPair(p *lessonv1.Pair) pairKey {
	return pairKey{Normalize(p.GetLeft(), false), Normalize(p.GetRight(), false)}
}

// pairsMatch reports whether got holds exactly the pairs of want, in any
// order, each once.
func pairsMatch(want, got []*lessonv1.Pair) bool {
	if len(want) == 0 || len(want) != len(got) {
		return false
	}
	need := make(map[pairKey]int, len(want))
	for _, p := range want {
		need[normPair(p)]++
	}
	for _, p := range got {
		k := normPair(p)
		if need[k] == 0 {
			return false
		}
		need[k]--
	}
	return true
}

// View returns ex as a learner sees it: without answers or explanation. The
// right items of a match-pairs exercise are shuffled, the same way every
// time for the same exercise id, and never left in the order of the pairs.
// Nil for nil.
func View(ex *lessonv1.Exercise) *lessonv1.ExerciseView {
	if ex == nil {
		return nil
	}
	v := &lessonv1.ExerciseView{Id: ex.GetId(), Position: ex.GetPosition()}
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		v.Kind = &lessonv1.ExerciseView_MultipleChoice{MultipleChoice: &lessonv1.MultipleChoiceView{
			Prompt:  k.MultipleChoice.GetPrompt(),
			Choices: append([]string(nil), k.MultipleChoice.GetChoices()...),
		}}
	case *lessonv1.Exercise_Translate:
		v.Kind = &lessonv1.ExerciseView_Translate{Translate: &lessonv1.TranslateView{
			Prompt: k.Translate.GetPrompt(),
		}}
	case *lessonv1.Exercise_FillBlank:
		v.Kind = &lessonv1.ExerciseView_FillBlank{FillBlank: &lessonv1.FillBlankView{
			SentenceWithBlank: k.FillBlank.GetSentenceWithBlank(),
		}}
	case *lessonv1.Exercise_Listen:
		v.Kind = &lessonv1.ExerciseView_Listen{Listen: &lessonv1.ListenView{
			Prompt:       k.Listen.GetPrompt(),
			AudioMediaId: k.Listen.GetAudioMediaId(),
		}}
	case *lessonv1.Exercise_MatchPairs:
		pairs := k.MatchPairs.GetPairs()
		left := make([]string, len(pairs))
		right := make([]string, len(pairs))
		for i, p := range pairs {
			left[i] = p.GetLeft()
			right[i] = p.GetRight()
		}
		shuffle(right, seed(ex.GetId(), left))
		v.Kind = &lessonv1.ExerciseView_MatchPairs{MatchPairs: &lessonv1.MatchPairsView{
			Left:  left,
			Right: right,
		}}
	}
	return v
}

// seed derives the shuffle seed from the exercise id, or from the left items
// when the exercise has no id yet (a preview).
func seed(id string, left []string) uint64 {
	h := fnv.New64a()
	if id != "" {
		h.Write([]byte(id))
	} else {
		for _, l := range left {
			h.Write([]byte(l))
			h.Write([]byte{0})
		}
	}
	return h.Sum64()
}

// shuffle permutes s deterministically from seed; with two or more items the
// result is never the original order (a rotation is applied if the shuffle
// happens to leave it unchanged).
func shuffle(s []string, seed uint64) {
	if len(s) < 2 {
		return
	}
	orig := append([]string(nil), s...)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	same := true
	for i := range s {
		if s[i] != orig[i] {
			same = false
			break
		}
	}
	if same {
		copy(s, append(orig[1:len(orig):len(orig)], orig[0]))
	}
}

// Validate checks what the .proto rules cannot: that an exercise has a kind,
// that texts a learner must match are not blank once normalised, that
// multiple-choice choices and match-pairs items are distinct once
// normalised, that the correct index is one of the choices, and that a
// fill-in-the-blank sentence has its blank. The error is an apperr.Invalid
// whose field names the part at fault (e.g. "match_pairs.pairs[2].right")
// and whose message says what is wrong.
func Validate(ex *lessonv1.Exercise) error {
	if ex == nil {
		return invalid("exercise", "the exercise is missing")
	}
	switch k := ex.GetKind().(type) {
	case *lessonv1.Exercise_MultipleChoice:
		mc := k.MultipleChoice
		if strings.TrimSpace(mc.GetPrompt()) == "" {
			return invalid("multiple_choice.prompt", "the prompt is empty")
		}
		if n := len(mc.GetChoices()); n < 2 || n > 10 {
			return invalid("multiple_choice.choices", fmt.Sprintf("a multiple choice needs 2 to 10 choices, not %d", n))
		}
		seen := map[string]int{}
		for i, c := range mc.GetChoices() {
			f := fmt.Sprintf("multiple_choice.choices[%d]", i)
			n := Normalize(c, false)
			if n == "" {
				return invalid(f, "the choice is blank")
			}
			if j, dup := seen[n]; dup {
				return invalid(f, fmt.Sprintf("choice %q is the same as choice %d (%q)", c, j, mc.GetChoices()[j]))
			}
			seen[n] = i
		}
		if i := mc.GetCorrectIndex(); i < 0 || int(i) >= len(mc.GetChoices()) {
			return invalid("multiple_choice.correct_index",
				fmt.Sprintf("correct_index %d is not the index (from 0) of one of the %d choices", i, len(mc.GetChoices())))
		}
	case *lessonv1.Exercise_Translate:
		if strings.TrimSpace(k.Translate.GetPrompt()) == "" {
			return invalid("translate.prompt", "the prompt is empty")
		}
		return checkAnswers("translate.accepted_answers", k.Translate.GetAcceptedAnswers())
	case *lessonv1.Exercise_FillBlank:
		if !strings.Contains(k.FillBlank.GetSentenceWithBlank(), "___") {
			return invalid("fill_blank.sentence_with_blank", `the sentence has no blank: mark it with "___" (three underscores)`)
		}
		return checkAnswers("fill_blank.accepted_answers", k.FillBlank.GetAcceptedAnswers())
	case *lessonv1.Exercise_Listen:
		return checkAnswers("listen.accepted_answers", k.Listen.GetAcceptedAnswers())
	case *lessonv1.Exercise_MatchPairs:
		pairs := k.MatchPairs.GetPairs()
		if n := len(pairs); n < 2 || n > 10 {
			return invalid("match_pairs.pairs", fmt.Sprintf("match pairs needs 2 to 10 pairs, not %d", n))
		}
		lefts, rights := map[string]int{}, map[string]int{}
		for i, p := range pairs {
			for _, side := range []struct {
				name, text string
				seen       map[string]int
			}{{"left", p.GetLeft(), lefts}, {"right", p.GetRight(), rights}} {
				f := fmt.Sprintf("match_pairs.pairs[%d].%s", i, side.name)
				n := Normalize(side.text, false)
				if n == "" {
					return invalid(f, "the item is blank")
				}
				if j, dup := side.seen[n]; dup {
					return invalid(f, fmt.Sprintf("%s item %q is the same as that of pair %d: a learner could not tell them apart", side.name, side.text, j))
				}
				side.seen[n] = i
			}
		}
	default:
		return invalid("kind", "the exercise has no kind: set one of multiple_choice, translate, fill_blank, match_pairs or listen")
	}
	return nil
}

func checkAnswers(field string, answers []string) error {
	if len(answers) == 0 {
		return invalid(field, "at least one accepted answer is needed")
	}
	if len(answers) > 20 {
		return invalid(field, fmt.Sprintf("at most 20 accepted answers, not %d", len(answers)))
	}
	for i, a := range answers {
		if Normalize(a, false) == "" {
			return invalid(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("accepted answer %q is blank once punctuation and spaces are removed", a))
		}
	}
	return nil
}

func invalid(field, msg string) error {
	return apperr.Invalid(field, ReasonInvalidExercise, msg)
}

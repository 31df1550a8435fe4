package exercise

import (
	"slices"
	"strings"
	"testing"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"golang.org/x/text/unicode/norm"
)

func mc(correct int32, choices ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{
		Id:          "11111111-1111-1111-1111-111111111111",
		Explanation: "Xin chào means hello.",
		Kind: &lessonv1.Exercise_MultipleChoice{MultipleChoice: &lessonv1.MultipleChoice{
			Prompt: "Which word means \"xin chào\"?", Choices: choices, CorrectIndex: correct,
		}},
	}
}

func translate(accentsOptional bool, accepted ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Kind: &lessonv1.Exercise_Translate{Translate: &lessonv1.Translate{
		Prompt: "Translate", AcceptedAnswers: accepted, AccentsOptional: accentsOptional,
	}}}
}

func fill(accepted ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Kind: &lessonv1.Exercise_FillBlank{FillBlank: &lessonv1.FillBlank{
		SentenceWithBlank: "I drink ___ every morning.", AcceptedAnswers: accepted,
	}}}
}

func listen(accepted ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{Kind: &lessonv1.Exercise_Listen{Listen: &lessonv1.Listen{
		Prompt: "Type what you hear", AcceptedAnswers: accepted,
	}}}
}

func pairs(ps ...string) *lessonv1.Exercise {
	return &lessonv1.Exercise{
		Id:   "22222222-2222-2222-2222-222222222222",
		Kind: &lessonv1.Exercise_MatchPairs{MatchPairs: &lessonv1.MatchPairs{Pairs: mkPairs(ps...)}},
	}
}

func mkPairs(ps ...string) []*lessonv1.Pair {
	var out []*lessonv1.Pair
	for i := 0; i+1 < len(ps); i += 2 {
		out = append(out, &lessonv1.Pair{Left: ps[i], Right: ps[i+1]})
	}
	return out
}

func text(s string) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_Text{Text: s}}
}

func choice(i int32) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_ChoiceIndex{ChoiceIndex: i}}
}

func pairAns(ps ...string) *lessonv1.Answer {
	return &lessonv1.Answer{Value: &lessonv1.Answer_Pairs{Pairs: &lessonv1.MatchPairsAnswer{Pairs: mkPairs(ps...)}}}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	decomposed := norm.NFD.String("Tiếng Việt")
	cases := []struct {
		in, want string
		strip    bool
	}{
		{"  Hello,   World!  ", "hello world", false},
		{"HELLO world", "hello world", false},
		{"Don't", "dont", false},
		{"Don’t", "dont", false},
		{"twenty-one", "twenty one", false},
		{"\tgood\nmorning.", "good morning", false},
		{"¿Qué tal?", "qué tal", false},
		{"Tiếng Việt", "tiếng việt", false},
		{decomposed, "tiếng việt", false},
		{"Tiếng Việt", "tieng viet", true},
		{decomposed, "tieng viet", true},
		{"Đi đâu?", "di dau", true},
		{"Đi đâu?", "đi đâu", false},
		{"Cà phê sữa đá", "ca phe sua da", true},
		{"Straße", "strasse", false},
		{"!!! ...", "", false},
		{"", "", false},
		// Old and new style Vietnamese tone placement.
		{"hoà bình", "hòa bình", false},
		{"Khoẻ không?", "khỏe không", false},
		{"thuỷ", "thủy", false},
		{"quý", norm.NFC.String("qu\u0301y"), false},
		// Other languages are left alone.
		{"está", "está", false},
		{"ésta", "ésta", false},
	}
	for _, c := range cases {
		if got := Normalize(c.in, c.strip); got != c.want {
			t.Errorf("Normalize(%q, %v) = %q, want %q", c.in, c.strip, got, c.want)
		}
	}
	if Normalize("está", false) == Normalize("ésta", false) {
		t.Error("Spanish está and ésta must stay distinct")
	}
}

func TestGrade(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		ex       *lessonv1.Exercise
		ans      *lessonv1.Answer
		correct  bool
		expected string
	}{
		{"mc right", mc(1, "Goodbye", "Hello", "Thanks"), choice(1), true, "Hello"},
		{"mc wrong", mc(1, "Goodbye", "Hello", "Thanks"), choice(0), false, "Hello"},
		{"mc first", mc(0, "Yes", "No"), choice(0), true, "Yes"},

		{"translate exact", translate(false, "Good morning", "Morning"), text("Good morning"), true, "Good morning"},
		{"translate second accepted", translate(false, "Good morning", "Morning"), text("morning!"), true, "Good morning"},
		{"translate case punct spaces", translate(false, "How are you?"), text("  how ARE   you "), true, "How are you?"},
		{"translate wrong", translate(false, "Good morning"), text("Good night"), false, "Good morning"},
		{"translate apostrophe", translate(false, "I'm fine"), text("Im fine"), true, "I'm fine"},
		{"translate curly apostrophe", translate(false, "I'm fine"), text("I’m fine."), true, "I'm fine"},
		{"translate blank-ish answer", translate(false, "Hello"), text("?!"), false, "Hello"},
		{"vi accents given", translate(true, "Tôi là sinh viên"), text("Tôi là sinh viên."), true, "Tôi là sinh viên"},
		{"vi accents optional, none", translate(true, "Tôi là sinh viên"), text("toi la sinh vien"), true, "Tôi là sinh viên"},
		{"vi accents optional, wrong accents", translate(true, "Tiếng Việt"), text("tiêng viét"), true, "Tiếng Việt"},
		{"vi accents optional, đ", translate(true, "Bạn đi đâu?"), text("ban di dau"), true, "Bạn đi đâu?"},
		{"vi accents required, none", translate(false, "Tiếng Việt"), text("tieng viet"), false, "Tiếng Việt"},
		{"vi accents required, wrong", translate(false, "cà phê"), text("cá phê"), false, "cà phê"},
		{"vi accents required, decomposed input", translate(false, "Tiếng Việt"), text(norm.NFD.String("tiếng việt")), true, "Tiếng Việt"},
		{"vi old-style tone", translate(false, "Tôi khỏe"), text("tôi khoẻ"), true, "Tôi khỏe"},
		{"vi accents optional, wrong word", translate(true, "Tôi là sinh viên"), text("toi la giao vien"), false, "Tôi là sinh viên"},
		{"vi accents optional, several accepted", translate(true, "Chào bạn", "Xin chào", "Chào"), text("xin chao"), true, "Chào bạn"},

		{"fill right", fill("coffee", "tea"), text("Tea"), true, "coffee"},
		{"fill wrong", fill("coffee", "tea"), text("water"), false, "coffee"},
		{"fill accents required", fill("phở"), text("pho"), false, "phở"},
		{"fill accents given", fill("phở"), text("Phở"), true, "phở"},

		{"listen right", listen("Nice to meet you"), text("nice to meet you!"), true, "Nice to meet you"},
		{"listen wrong", listen("Nice to meet you"), text("nice to see you"), false, "Nice to meet you"},

		{"pairs right in order", pairs("one", "một", "two", "hai"), pairAns("one", "một", "two", "hai"), true, "one = một; two = hai"},
		{"pairs right any order", pairs("one", "một", "two", "hai", "three", "ba"), pairAns("three", "ba", "one", "một", "two", "hai"), true, "one = một; two = hai; three = ba"},
		{"pairs normalised", pairs("one", "một", "two", "hai"), pairAns("One ", "Một", "TWO", "hai."), true, "one = một; two = hai"},
		{"pairs swapped", pairs("one", "một", "two", "hai"), pairAns("one", "hai", "two", "một"), false, "one = một; two = hai"},
		{"pairs missing", pairs("one", "một", "two", "hai"), pairAns("one", "một"), false, "one = một; two = hai"},
		{"pairs extra", pairs("one", "một", "two", "hai"), pairAns("one", "một", "two", "hai", "three", "ba"), false, "one = một; two = hai"},
		{"pairs duplicated", pairs("one", "một", "two", "hai"), pairAns("one", "một", "one", "một"), false, "one = một; two = hai"},
		{"pairs empty", pairs("one", "một", "two", "hai"), pairAns(), false, "one = một; two = hai"},
		{"pairs accents required", pairs("one", "một", "two", "hai"), pairAns("one", "mot", "two", "hai"), false, "one = một; two = hai"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.ex.Explanation = "because"
			res, err := Grade(c.ex, c.ans)
			if err != nil {
				t.Fatalf("Grade: %v", err)
			}
			if res.Correct != c.correct {
				t.Errorf("Correct = %v, want %v", res.Correct, c.correct)
			}
			if res.Expected != c.expected {
				t.Errorf("Expected = %q, want %q", res.Expected, c.expected)
			}
			if res.Explanation != "because" {
				t.Errorf("Explanation = %q", res.Explanation)
			}
		})
	}
}

func TestGradeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		ex     *lessonv1.Exercise
		ans    *lessonv1.Answer
		reason string
	}{
		{"text for mc", mc(0, "a", "b"), text("a"), ReasonAnswerTypeMismatch},
		{"pairs for mc", mc(0, "a", "b"), pairAns("a", "b"), ReasonAnswerTypeMismatch},
		{"index for translate", translate(false, "hi"), choice(0), ReasonAnswerTypeMismatch},
		{"pairs for fill", fill("hi"), pairAns("a", "b"), ReasonAnswerTypeMismatch},
		{"index for listen", listen("hi"), choice(1), ReasonAnswerTypeMismatch},
		{"text for pairs", pairs("a", "b", "c", "d"), text("a b"), ReasonAnswerTypeMismatch},
		{"index for pairs", pairs("a", "b", "c", "d"), choice(0), ReasonAnswerTypeMismatch},
		{"nil answer", translate(false, "hi"), nil, ReasonAnswerTypeMismatch},
		{"empty answer", mc(0, "a", "b"), &lessonv1.Answer{}, ReasonAnswerTypeMismatch},
		{"index too big", mc(0, "a", "b"), choice(2), ReasonChoiceOutOfRange},
		{"index negative", mc(0, "a", "b"), choice(-1), ReasonChoiceOutOfRange},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Grade(c.ex, c.ans)
			e, ok := apperr.As(err)
			if !ok {
				t.Fatalf("err = %v, want an apperr", err)
			}
			if e.Kind != apperr.KindInvalid || e.Field != "answer" || e.Reason != c.reason {
				t.Errorf("err = %+v, want Invalid answer %s", e, c.reason)
			}
		})
	}
	if _, err := Grade(&lessonv1.Exercise{}, text("x")); err == nil || apperr.KindOf(err) != apperr.KindInternal {
		t.Errorf("exercise with no kind: err = %v, want internal", err)
	}
	if _, err := Grade(nil, text("x")); err == nil {
		t.Error("nil exercise: no error")
	}
}

func TestView(t *testing.T) {
	t.Parallel()
	m := mc(2, "a", "b", "c")
	m.Position = 3
	v := View(m)
	if v.GetId() != m.GetId() || v.GetPosition() != 3 {
		t.Errorf("id/position = %q/%d", v.GetId(), v.GetPosition())
	}
	if got := v.GetMultipleChoice(); got.GetPrompt() != m.GetMultipleChoice().GetPrompt() || !slices.Equal(got.GetChoices(), []string{"a", "b", "c"}) {
		t.Errorf("mc view = %v", got)
	}
	if p := View(translate(true, "secret")).GetTranslate().GetPrompt(); p != "Translate" {
		t.Errorf("translate prompt = %q", p)
	}
	if s := View(fill("secret")).GetFillBlank().GetSentenceWithBlank(); s != "I drink ___ every morning." {
		t.Errorf("fill sentence = %q", s)
	}
	l := listen("secret")
	l.GetListen().AudioMediaId = "33333333-3333-3333-3333-333333333333"
	if lv := View(l).GetListen(); lv.GetPrompt() != "Type what you hear" || lv.GetAudioMediaId() != "33333333-3333-3333-3333-333333333333" {
		t.Errorf("listen view = %v", lv)
	}
	// No view carries an answer or the explanation.
	for _, ex := range []*lessonv1.Exercise{m, translate(true, "secret"), fill("secret"), l} {
		if s := View(ex).String(); strings.Contains(s, "secret") || strings.Contains(s, "Xin chào means") {
			t.Errorf("view leaks the answer: %s", s)
		}
	}
	if View(nil) != nil {
		t.Error("View(nil) != nil")
	}
}

func TestViewMatchPairsShuffle(t *testing.T) {
	t.Parallel()
	ex := pairs("one", "một", "two", "hai", "three", "ba", "four", "bốn", "five", "năm")
	v1 := View(ex).GetMatchPairs()
	v2 := View(ex).GetMatchPairs()
	wantLeft := []string{"one", "two", "three", "four", "five"}
	orig := []string{"một", "hai", "ba", "bốn", "năm"}
	if !slices.Equal(v1.GetLeft(), wantLeft) {
		t.Errorf("left = %v", v1.GetLeft())
	}
	if !slices.Equal(v1.GetRight(), v2.GetRight()) {
		t.Errorf("shuffle not deterministic: %v vs %v", v1.GetRight(), v2.GetRight())
	}
	if slices.Equal(v1.GetRight(), orig) {
		t.Errorf("right items in answer order: %v", v1.GetRight())
	}
	sorted := slices.Sorted(slices.Values(v1.GetRight()))
	if !slices.Equal(sorted, slices.Sorted(slices.Values(orig))) {
		t.Errorf("right items changed: %v", v1.GetRight())
	}
	// The exercise itself is untouched.
	if got := Expected(ex); got != "one = một; two = hai; three = ba; four = bốn; five = năm" {
		t.Errorf("exercise changed: %s", got)
	}
	// Never the answer order, whatever the id, even with two pairs.
	for _, id := range []string{"", "a", "b", "c", "d", "e", "f", "g", "h"} {
		two := pairs("yes", "có", "no", "không")
		two.Id = id
		if r := View(two).GetMatchPairs().GetRight(); !slices.Equal(r, []string{"không", "có"}) {
			t.Errorf("id %q: right = %v", id, r)
		}
	}
	// Different ids give different orders at least sometimes.
	orders := map[string]bool{}
	for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		ex.Id = id
		orders[strings.Join(View(ex).GetMatchPairs().GetRight(), ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("all ids give the same order")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := []*lessonv1.Exercise{
		mc(1, "Goodbye", "Hello"),
		translate(true, "Tiếng Việt", "tiếng việt"),
		fill("coffee"),
		listen("Nice to meet you"),
		pairs("one", "một", "two", "hai"),
	}
	for _, ex := range ok {
		if err := Validate(ex); err != nil {
			t.Errorf("Validate(%v) = %v", ex, err)
		}
	}
	noBlank := fill("coffee")
	noBlank.GetFillBlank().SentenceWithBlank = "I drink coffee."
	emptyPrompt := translate(false, "x")
	emptyPrompt.GetTranslate().Prompt = "  "
	bad := []struct {
		name  string
		ex    *lessonv1.Exercise
		field string
	}{
		{"nil", nil, "exercise"},
		{"no kind", &lessonv1.Exercise{}, "kind"},
		{"mc one choice", mc(0, "a"), "multiple_choice.choices"},
		{"mc index out of range", mc(2, "a", "b"), "multiple_choice.correct_index"},
		{"mc negative index", mc(-1, "a", "b"), "multiple_choice.correct_index"},
		{"mc duplicate choices", mc(0, "Hello", "hello!"), "multiple_choice.choices[1]"},
		{"mc blank choice", mc(0, "Hello", "?"), "multiple_choice.choices[1]"},
		{"translate no answers", translate(false), "translate.accepted_answers"},
		{"translate blank answer", translate(false, "ok", " ... "), "translate.accepted_answers[1]"},
		{"translate empty prompt", emptyPrompt, "translate.prompt"},
		{"fill no blank", noBlank, "fill_blank.sentence_with_blank"},
		{"fill blank answer", fill("!"), "fill_blank.accepted_answers[0]"},
		{"listen no answers", listen(), "listen.accepted_answers"},
		{"pairs one", pairs("one", "một"), "match_pairs.pairs"},
		{"pairs dup left", pairs("one", "một", "One.", "hai"), "match_pairs.pairs[1].left"},
		{"pairs dup right", pairs("one", "một", "two", " một "), "match_pairs.pairs[1].right"},
		{"pairs blank right", pairs("one", "một", "two", "--"), "match_pairs.pairs[1].right"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(c.ex)
			e, ok := apperr.As(err)
			if !ok {
				t.Fatalf("err = %v, want an apperr", err)
			}
			if e.Kind != apperr.KindInvalid || e.Reason != ReasonInvalidExercise || e.Field != c.field {
				t.Errorf("err = %+v, want field %q", e, c.field)
			}
			if e.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

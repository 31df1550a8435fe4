package exercise

import (
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

var folder = cases.Fold()

// Normalize returns the form in which free-text answers are compared:
// Unicode NFC, case-folded, apostrophes dropped ("don't" = "dont"), other
// punctuation and symbols turned into spaces ("twenty-one" = "twenty one"),
// spaces collapsed and trimmed, and the Vietnamese tone mark of "oa", "oe"
// and "uy" endings put in one place (old style "hoà" = new style "hòa").
// With stripAccents, every diacritic is removed too, and đ becomes d
// ("Tiếng Việt" = "tieng viet").
func Normalize(s string, stripAccents bool) string {
	// Decompose first so that accents are separate runes whatever form the
	// input came in, and fold case on the decomposed text.
	s = folder.String(norm.NFD.String(s))

	var b strings.Builder
	b.Grow(len(s))
	space := false // a separator is pending
	for _, r := range s {
		switch {
		case isApostrophe(r):
			continue
		case unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsControl(r):
			space = true
			continue
		case unicode.Is(unicode.Mn, r) && stripAccents:
			continue
		}
		if stripAccents {
			r = stripLetter(r)
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	out := b.String()
	if !stripAccents {
		out = canonicalVietnameseTone(out)
	}
	return norm.NFC.String(out)
}

func isApostrophe(r rune) bool {
	switch r {
	case '\'', '\u2019', '\u2018', '\u02bc', '`', '\u00b4':
		return true
	}
	return false
}

// stripLetter maps letters that carry a mark but do not decompose under NFD.
func stripLetter(r rune) rune {
	switch r {
	case 'đ', 'Đ':
		return 'd'
	case 'ø', 'Ø':
		return 'o'
	case 'ł', 'Ł':
		return 'l'
	case 'ı':
		return 'i'
	}
	return r
}

// Vietnamese tone marks as combining characters (NFD).
func isVietnameseTone(r rune) bool {
	switch r {
	case '\u0300', '\u0301', '\u0303', '\u0309', '\u0323':
		return true
	}
	return false
}

// canonicalVietnameseTone takes decomposed, case-folded text and, in every
// word whose letters end in "oa", "oe" or "uy" and that carries exactly one
// tone mark on one of those two vowels, moves the mark to the first of them.
// Vietnamese writes these syllables both ways ("hoà"/"hòa", "thuỷ"/"thủy");
// both are correct, so both must compare equal.
func canonicalVietnameseTone(s string) string {
	if !strings.ContainsAny(s, "\u0300\u0301\u0303\u0309\u0323") {
		return s
	}
	words := strings.Split(s, " ")
	for i, w := range words {
		words[i] = canonicalWordTone(w)
	}
	return strings.Join(words, " ")
}

func canonicalWordTone(w string) string {
	rs := []rune(w)
	// Split the word into base letters, each with its marks.
	type letter struct {
		base  rune
		marks []rune
	}
	var ls []letter
	for _, r := range rs {
		if unicode.Is(unicode.Mn, r) {
			if len(ls) == 0 {
				return w
			}
			ls[len(ls)-1].marks = append(ls[len(ls)-1].marks, r)
			continue
		}
		ls = append(ls, letter{base: r})
	}
	n := len(ls)
	if n < 2 {
		return w
	}
	pair := string([]rune{ls[n-2].base, ls[n-1].base})
	if pair != "oa" && pair != "oe" && pair != "uy" {
		return w
	}
	// Exactly one tone mark in the word, on one of the last two letters, and
	// neither of them carries another mark (ô, ơ, ư ... are other vowels).
	tones := 0
	var tone rune
	for _, l := range ls {
		for _, m := range l.marks {
			if isVietnameseTone(m) {
				tones++
				tone = m
			}
		}
	}
	if tones != 1 {
		return w
	}
	for _, l := range ls[n-2:] {
		if len(l.marks) > 1 || (len(l.marks) == 1 && !isVietnameseTone(l.marks[0])) {
			return w
		}
	}
	if len(ls[n-2].marks)+len(ls[n-1].marks) != 1 {
		return w
	}
	ls[n-2].marks = []rune{tone}
	ls[n-1].marks = nil
	var b strings.Builder
	for _, l := range ls {
		b.WriteRune(l.base)
		for _, m := range l.marks {
			b.WriteRune(m)
		}
	}
	return b.String()
}

// Package content reads course files — a course with its units, lessons,
// words and exercises, and the quizzes attached to it, in YAML or JSON —
// checks them, and imports them through the lesson and quiz services. It
// also holds the built-in demo course (see Demo).
//
// # File format
//
// A course file is a YAML (or JSON) object with these keys:
//
//	publish: true          # optional, default true: publish every lesson on import
//	course:                # a puchi.lesson.v1.CourseBundle
//	  slug: en-for-vi
//	  title: English for Vietnamese speakers
//	  sourceLanguage: vi
//	  targetLanguage: en
//	  units:
//	    - key: first-steps
//	      title: First steps
//	      lessons:
//	        - key: hello
//	          title: Hello and goodbye
//	          xpReward: 10
//	          words:
//	            - {term: hello, translation: xin chào, partOfSpeech: interjection}
//	          exercises:
//	            - explanation: '"Hello" is "xin chào".'
//	              multipleChoice: {prompt: ..., choices: [Goodbye, Hello], correctIndex: 1}
//	quizzes:               # optional; each a puchi.quiz.v1.ImportQuizRequest ...
//	  - key: en-for-vi-first-steps
//	    unit: first-steps            # ... whose unit, lesson and covered lessons
//	    lesson: hello                # are given by key (lesson optional),
//	    coveredLessons: [hello]      # not by id
//	    title: First steps check
//	    questions: [...]             # exercises, as in lessons
//
// Field names are those of the protos, in lowerCamelCase (their JSON names)
// or snake_case; an unknown field is an error. The ids the protos ask for
// (course, unit, lesson and covered lesson ids of a quiz; exercise ids) are
// not written in the file: Import takes them from LessonService.ImportCourse.
package content

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"buf.build/go/protovalidate"
	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/services/exercise"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"gopkg.in/yaml.v3"
)

// ReasonInvalidContent is the reason of the apperr.Invalid errors Parse
// returns (field "content").
const ReasonInvalidContent = "INVALID_CONTENT"

// Bundle is a parsed and checked course file.
type Bundle struct {
	// The course, its units, lessons, words and exercises.
	Course *lessonv1.CourseBundle
	// Whether Import publishes every lesson (ImportCourseRequest.publish).
	Publish bool
	// The quizzes, in file order.
	Quizzes []*Quiz
}

// Quiz is a quiz of a course file: an ImportQuizRequest whose unit, lesson
// and covered lessons are named by key.
type Quiz struct {
	// Key of the unit the quiz belongs to.
	UnitKey string
	// Key of the lesson (of that unit) it is attached to; empty for a unit
	// quiz.
	LessonKey string
	// Keys of the lessons to complete to unlock it.
	CoveredLessonKeys []string
	// The quiz, with course_id, unit_id, lesson_id and covered_lesson_ids
	// empty: Request fills them.
	Def *quizv1.ImportQuizRequest
}

// Request returns the ImportQuizRequest for q with the keys resolved to ids,
// as returned by LessonService.ImportCourse.
func (q *Quiz) Request(courseID string, unitIDs, lessonIDs map[string]string) (*quizv1.ImportQuizRequest, error) {
	req := proto.Clone(q.Def).(*quizv1.ImportQuizRequest)
	req.CourseId = courseID
	var ok bool
	if req.UnitId, ok = unitIDs[q.UnitKey]; !ok || req.UnitId == "" {
		return nil, fmt.Errorf("quiz %q: no id for unit %q", q.Def.GetKey(), q.UnitKey)
	}
	if q.LessonKey != "" {
		if req.LessonId, ok = lessonIDs[q.LessonKey]; !ok || req.LessonId == "" {
			return nil, fmt.Errorf("quiz %q: no id for lesson %q", q.Def.GetKey(), q.LessonKey)
		}
	}
	req.CoveredLessonIds = nil
	for _, k := range q.CoveredLessonKeys {
		id, ok := lessonIDs[k]
		if !ok || id == "" {
			return nil, fmt.Errorf("quiz %q: no id for covered lesson %q", q.Def.GetKey(), k)
		}
		req.CoveredLessonIds = append(req.CoveredLessonIds, id)
	}
	return req, nil
}

//go:embed demo.yaml
var demoYAML []byte

// DemoYAML returns the source of the built-in demo course.
func DemoYAML() []byte { return slices.Clone(demoYAML) }

// Demo returns the built-in demo course, "English for Vietnamese speakers".
func Demo() (*Bundle, error) {
	b, err := Parse(demoYAML)
	if err != nil {
		return nil, fmt.Errorf("demo course: %w", err)
	}
	return b, nil
}

// Summary is what Import imported.
type Summary struct {
	// Id of the course (UUID).
	CourseID string
	// Whether the course was new (false: an existing one was updated).
	Created bool
	// Numbers of units, lessons, distinct words (by term, ignoring case),
	// exercises (of lessons) and quizzes imported.
	Units, Lessons, Words, Exercises, Quizzes int
	// Lessons archived because they are no longer in the file.
	ArchivedLessons int
}

// Import imports b: LessonService.ImportCourse with the course, then
// QuizService.ImportQuiz for every quiz, its keys resolved to the ids
// ImportCourse returned. Both calls match what exists by slug and keys, so
// importing the same bundle again updates the course in place. The caller's
// context carries the credentials (both calls are for admins).
func Import(ctx context.Context, lc lessonv1.LessonServiceClient, qc quizv1.QuizServiceClient, b *Bundle) (Summary, error) {
	if b == nil || b.Course == nil {
		return Summary{}, fmt.Errorf("import: no course")
	}
	resp, err := lc.ImportCourse(ctx, &lessonv1.ImportCourseRequest{Bundle: b.Course, Publish: b.Publish})
	if err != nil {
		return Summary{}, fmt.Errorf("import course %q: %w", b.Course.GetSlug(), err)
	}
	s := b.counts()
	s.CourseID = resp.GetCourse().GetId()
	s.Created = resp.GetCreated()
	s.ArchivedLessons = int(resp.GetArchivedLessonCount())
	if s.CourseID == "" {
		return s, fmt.Errorf("import course %q: the lesson service returned no course id", b.Course.GetSlug())
	}
	s.Quizzes = 0
	for _, q := range b.Quizzes {
		req, err := q.Request(s.CourseID, resp.GetUnitIds(), resp.GetLessonIds())
		if err != nil {
			return s, fmt.Errorf("import: %w", err)
		}
		if _, err := qc.ImportQuiz(ctx, req); err != nil {
			return s, fmt.Errorf("import quiz %q: %w", req.GetKey(), err)
		}
		s.Quizzes++
	}
	return s, nil
}

// counts returns the numbers of units, lessons, words, exercises and
// quizzes of b.
func (b *Bundle) counts() Summary {
	s := Summary{Units: len(b.Course.GetUnits()), Quizzes: len(b.Quizzes)}
	words := map[string]bool{}
	for _, u := range b.Course.GetUnits() {
		s.Lessons += len(u.GetLessons())
		for _, l := range u.GetLessons() {
			s.Exercises += len(l.GetExercises())
			for _, w := range l.GetWords() {
				words[exercise.Normalize(w.GetTerm(), false)] = true
			}
		}
	}
	s.Words = len(words)
	return s
}

// Counts returns the numbers of units, lessons, distinct words, exercises
// and quizzes of b (the Summary Import would return, without ids).
func (b *Bundle) Counts() Summary { return b.counts() }

// Parse reads a course file (YAML or JSON) and checks it: unknown fields,
// values of the wrong type, the rules of the protos, and what they cannot
// say (exercise.Validate on every exercise and question, keys unique in the
// file, quizzes referring to units and lessons that exist). The error lists
// every problem found, each with where it is: the line, the unit and lesson
// (or quiz) by key, and the exercise by number.
func Parse(data []byte) (*Bundle, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, invalid([]string{"not valid YAML or JSON: " + err.Error()})
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, invalid([]string{"the file is empty"})
	}
	root := doc.Content[0]
	p := &problems{}
	if root.Kind != yaml.MappingNode {
		p.addAt(root, nil, "the file must be an object with the keys course and quizzes")
		return nil, p.err()
	}
	b := &Bundle{Publish: true}
	var courseNode, quizzesNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "course":
			courseNode = v
		case "quizzes":
			quizzesNode = v
		case "publish":
			if v.Tag != "!!bool" {
				p.addAt(v, nil, "publish must be true or false")
				continue
			}
			b.Publish, _ = strconv.ParseBool(v.Value)
		default:
			p.addAt(k, nil, fmt.Sprintf("unknown key %q (expected course, quizzes or publish)", k.Value))
		}
	}
	if courseNode == nil {
		p.addAt(root, nil, "the course is missing: add a course: key")
		return nil, p.err()
	}

	// The course.
	b.Course = &lessonv1.CourseBundle{}
	courseWhere := where{"course"}
	if checkMessage(courseNode, b.Course.ProtoReflect().Descriptor(), courseWhere, p) {
		if err := unmarshal(courseNode, b.Course); err != nil {
			p.addAt(courseNode, courseWhere, err.Error())
		}
	}

	// The quizzes.
	if quizzesNode != nil && !isNull(quizzesNode) {
		if quizzesNode.Kind != yaml.SequenceNode {
			p.addAt(quizzesNode, where{"quizzes"}, "expected a list of quizzes")
		} else {
			for i, qn := range quizzesNode.Content {
				if q := parseQuiz(qn, i, p); q != nil {
					b.Quizzes = append(b.Quizzes, q)
				}
			}
		}
	}
	if !p.empty() {
		return nil, p.err()
	}

	checkCourse(b.Course, p)
	checkQuizzes(b, p)
	if !p.empty() {
		return nil, p.err()
	}
	return b, nil
}

// Quiz entries: the fields naming units and lessons by key, and the id
// fields they stand for.
var (
	quizKeyFields = map[string]string{
		"unit": "unit", "lesson": "lesson",
		"coveredLessons": "coveredLessons", "covered_lessons": "coveredLessons",
	}
	quizIDFields = map[string]string{
		"courseId": "", "course_id": "",
		"unitId": "unit", "unit_id": "unit",
		"lessonId": "lesson", "lesson_id": "lesson",
		"coveredLessonIds": "coveredLessons", "covered_lesson_ids": "coveredLessons",
	}
)

func parseQuiz(n *yaml.Node, i int, p *problems) *Quiz {
	w := where{fmt.Sprintf("quizzes[%d]", i)}
	if n.Kind != yaml.MappingNode {
		p.addAt(n, w, "expected a quiz (an object)")
		return nil
	}
	if k := mapValue(n, "key"); k != nil && k.Value != "" {
		w = where{fmt.Sprintf("quiz %q", k.Value)}
	}
	q := &Quiz{Def: &quizv1.ImportQuizRequest{}}
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column}
	ok := true
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], n.Content[j+1]
		if name, isKey := quizKeyFields[k.Value]; isKey {
			switch name {
			case "unit", "lesson":
				if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
					p.addAt(v, w, fmt.Sprintf("%s must be the key of a %s", k.Value, name))
					ok = false
				} else if name == "unit" {
					q.UnitKey = v.Value
				} else {
					q.LessonKey = v.Value
				}
			case "coveredLessons":
				if v.Kind != yaml.SequenceNode {
					p.addAt(v, w, k.Value+" must be a list of lesson keys")
					ok = false
					continue
				}
				for _, item := range v.Content {
					if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
						p.addAt(item, w, k.Value+" must be a list of lesson keys")
						ok = false
						continue
					}
					q.CoveredLessonKeys = append(q.CoveredLessonKeys, item.Value)
				}
			}
			continue
		}
		if instead, isID := quizIDFields[k.Value]; isID {
			msg := fmt.Sprintf("%s is not written in a course file: the quiz belongs to the file's course", k.Value)
			if instead != "" {
				msg = fmt.Sprintf("%s is not written in a course file: give the key with %s instead", k.Value, instead)
			}
			p.addAt(k, w, msg)
			ok = false
			continue
		}
		rest.Content = append(rest.Content, k, v)
	}
	if !checkMessage(rest, q.Def.ProtoReflect().Descriptor(), w, p) || !ok {
		return nil
	}
	if err := unmarshal(rest, q.Def); err != nil {
		p.addAt(n, w, err.Error())
		return nil
	}
	return q
}

// checkCourse checks what the structure of the file does not: the proto
// rules, unique keys and terms, and every exercise.
func checkCourse(c *lessonv1.CourseBundle, p *problems) {
	if err := protovalidate.Validate(c); err != nil {
		addViolations(err, courseWhereOf(c), p)
	}
	units := map[string]bool{}
	lessons := map[string]string{}
	for ui, u := range c.GetUnits() {
		uw := where{"course", unitName(u, ui)}
		if u.GetKey() != "" {
			if units[u.GetKey()] {
				p.add(uw, fmt.Sprintf("unit key %q is used twice", u.GetKey()))
			}
			units[u.GetKey()] = true
		}
		for li, l := range u.GetLessons() {
			lw := append(slices.Clone(uw), lessonName(l, li))
			if l.GetKey() != "" {
				if other, dup := lessons[l.GetKey()]; dup {
					p.add(lw, fmt.Sprintf("lesson key %q is used twice (also in unit %q): lesson keys are unique in the file", l.GetKey(), other))
				}
				lessons[l.GetKey()] = u.GetKey()
			}
			terms := map[string]int{}
			for wi, word := range l.GetWords() {
				t := exercise.Normalize(word.GetTerm(), false)
				if t == "" {
					continue // protovalidate reports empty terms
				}
				if j, dup := terms[t]; dup {
					p.add(append(slices.Clone(lw), fmt.Sprintf("word %d", wi+1)),
						fmt.Sprintf("term %q is also word %d: a lesson's terms must be distinct", word.GetTerm(), j+1))
				}
				terms[t] = wi
			}
			for ei, ex := range l.GetExercises() {
				checkExercise(ex, append(slices.Clone(lw), fmt.Sprintf("exercise %d", ei+1)), p)
			}
		}
	}
}

func checkExercise(ex *lessonv1.Exercise, w where, p *problems) {
	if ex.GetKind() == nil || p.reportedUnder(w) {
		return // protovalidate reported it already
	}
	if err := exercise.Validate(ex); err != nil {
		if e, ok := apperr.As(err); ok {
			p.add(append(w, e.Field), e.Message)
		} else {
			p.add(w, err.Error())
		}
	}
}

// checkQuizzes checks the quizzes: proto rules, keys, and that the units
// and lessons they name exist.
func checkQuizzes(b *Bundle, p *problems) {
	unitOf := map[string]string{} // lesson key -> unit key
	units := map[string]bool{}
	for _, u := range b.Course.GetUnits() {
		units[u.GetKey()] = true
		for _, l := range u.GetLessons() {
			unitOf[l.GetKey()] = u.GetKey()
		}
	}
	// Placeholder ids, to check the requests against their proto rules.
	const placeholder = "00000000-0000-4000-8000-000000000000"
	keys := map[string]bool{}
	for qi, q := range b.Quizzes {
		w := where{fmt.Sprintf("quiz %q", q.Def.GetKey())}
		if q.Def.GetKey() == "" {
			w = where{fmt.Sprintf("quizzes[%d]", qi)}
		} else if keys[q.Def.GetKey()] {
			p.add(w, fmt.Sprintf("quiz key %q is used twice", q.Def.GetKey()))
		}
		keys[q.Def.GetKey()] = true
		switch {
		case q.UnitKey == "":
			p.add(w, "unit is missing: give the key of the unit the quiz belongs to")
		case !units[q.UnitKey]:
			p.add(w, fmt.Sprintf("unit %q is not a unit of the course", q.UnitKey))
		}
		if q.LessonKey != "" {
			if u, ok := unitOf[q.LessonKey]; !ok {
				p.add(w, fmt.Sprintf("lesson %q is not a lesson of the course", q.LessonKey))
			} else if q.UnitKey != "" && u != q.UnitKey {
				p.add(w, fmt.Sprintf("lesson %q is in unit %q, not in the quiz's unit %q", q.LessonKey, u, q.UnitKey))
			}
		}
		seen := map[string]bool{}
		for _, k := range q.CoveredLessonKeys {
			if _, ok := unitOf[k]; !ok {
				p.add(w, fmt.Sprintf("covered lesson %q is not a lesson of the course", k))
			}
			if seen[k] {
				p.add(w, fmt.Sprintf("covered lesson %q is listed twice", k))
			}
			seen[k] = true
		}
		req := proto.Clone(q.Def).(*quizv1.ImportQuizRequest)
		req.CourseId, req.UnitId = placeholder, placeholder
		if err := protovalidate.Validate(req); err != nil {
			addViolations(err, func(fp []pathElem) where { return quizWhere(w, fp) }, p)
		}
		for i, ex := range q.Def.GetQuestions() {
			checkExercise(ex, append(slices.Clone(w), fmt.Sprintf("question %d", i+1)), p)
		}
	}
}

func unitName(u *lessonv1.UnitBundle, i int) string {
	if u.GetKey() == "" {
		return fmt.Sprintf("unit %d", i+1)
	}
	return fmt.Sprintf("unit %q", u.GetKey())
}

func lessonName(l *lessonv1.LessonBundle, i int) string {
	if l.GetKey() == "" {
		return fmt.Sprintf("lesson %d", i+1)
	}
	return fmt.Sprintf("lesson %q", l.GetKey())
}

// pathElem is one step of a protovalidate field path.
type pathElem struct {
	name  string
	index int // -1: not a list element
}

// courseWhereOf returns a function describing a field path of c the way
// the problems name places: by unit and lesson key, exercise by number.
func courseWhereOf(c *lessonv1.CourseBundle) func([]pathElem) where {
	return func(fp []pathElem) where {
		w := where{"course"}
		var u *lessonv1.UnitBundle
		for i := 0; i < len(fp); i++ {
			e := fp[i]
			switch {
			case e.name == "units" && e.index >= 0 && e.index < len(c.GetUnits()):
				u = c.GetUnits()[e.index]
				w = append(w, unitName(u, e.index))
			case e.name == "lessons" && u != nil && e.index >= 0 && e.index < len(u.GetLessons()):
				w = append(w, lessonName(u.GetLessons()[e.index], e.index))
			default:
				w = append(w, elemName(e))
			}
		}
		return w
	}
}

func quizWhere(w where, fp []pathElem) where {
	w = slices.Clone(w)
	for _, e := range fp {
		w = append(w, elemName(e))
	}
	return w
}

func elemName(e pathElem) string {
	if e.index < 0 {
		return e.name
	}
	switch e.name {
	case "exercises":
		return fmt.Sprintf("exercise %d", e.index+1)
	case "questions":
		return fmt.Sprintf("question %d", e.index+1)
	case "words":
		return fmt.Sprintf("word %d", e.index+1)
	}
	return fmt.Sprintf("%s[%d]", e.name, e.index)
}

func addViolations(err error, describe func([]pathElem) where, p *problems) {
	ve, ok := err.(*protovalidate.ValidationError)
	if !ok {
		p.add(nil, err.Error())
		return
	}
	for _, v := range ve.Violations {
		if v == nil || v.Proto == nil {
			continue
		}
		var fp []pathElem
		for _, e := range v.Proto.GetField().GetElements() {
			pe := pathElem{name: e.GetFieldName(), index: -1}
			if e.HasIndex() {
				pe.index = int(e.GetIndex())
			}
			fp = append(fp, pe)
		}
		msg := v.Proto.GetMessage()
		if msg == "" {
			msg = v.Proto.GetRuleId()
		}
		w := describe(fp)
		p.places = append(p.places, w.String())
		p.add(w, msg)
	}
}

// checkMessage checks that n can be read as a message of type md: an
// object whose keys are fields of md with values of the right shape. It
// reports every problem, with its line, and returns whether there was none.
func checkMessage(n *yaml.Node, md protoreflect.MessageDescriptor, w where, p *problems) bool {
	n = deref(n)
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		p.addAt(n, w, fmt.Sprintf("expected an object (%s)", md.Name()))
		return false
	}
	ok := true
	oneofs := map[protoreflect.FullName]string{}
	fields := md.Fields()
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		fd := fields.ByJSONName(k.Value)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(k.Value))
		}
		if fd == nil {
			p.addAt(k, w, fmt.Sprintf("unknown field %q in %s (known fields: %s)", k.Value, md.Name(), fieldList(md)))
			ok = false
			continue
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, dup := oneofs[od.FullName()]; dup {
				p.addAt(k, w, fmt.Sprintf("%s and %s cannot both be set: give only one", prev, k.Value))
				ok = false
			}
			oneofs[od.FullName()] = k.Value
		}
		fw := append(slices.Clone(w), k.Value)
		switch {
		case fd.IsMap():
			if !isNull(v) && v.Kind != yaml.MappingNode {
				p.addAt(v, fw, "expected an object")
				ok = false
			}
		case fd.IsList():
			if isNull(v) {
				continue
			}
			if v.Kind != yaml.SequenceNode {
				p.addAt(v, fw, "expected a list")
				ok = false
				continue
			}
			for j, item := range v.Content {
				iw := append(slices.Clone(w), listItemName(fd, item, j))
				if !checkValue(item, fd, iw, p) {
					ok = false
				}
			}
		default:
			if !checkValue(v, fd, fw, p) {
				ok = false
			}
		}
	}
	return ok
}

// listItemName names item j of list field fd: units and lessons by key,
// exercises, questions and words by number from 1.
func listItemName(fd protoreflect.FieldDescriptor, item *yaml.Node, j int) string {
	switch fd.Name() {
	case "units", "lessons":
		kind := strings.TrimSuffix(string(fd.Name()), "s")
		if k := mapValue(item, "key"); k != nil && k.Kind == yaml.ScalarNode && k.Value != "" {
			return fmt.Sprintf("%s %q", kind, k.Value)
		}
		return fmt.Sprintf("%s %d", kind, j+1)
	}
	return elemName(pathElem{name: string(fd.Name()), index: j})
}

func checkValue(v *yaml.Node, fd protoreflect.FieldDescriptor, w where, p *problems) bool {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return checkMessage(v, fd.Message(), w, p)
	}
	v = deref(v)
	if isNull(v) {
		return true
	}
	if v.Kind != yaml.ScalarNode {
		p.addAt(v, w, fmt.Sprintf("expected a %s, not a list or an object", kindName(fd)))
		return false
	}
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v.Tag != "!!bool" {
			p.addAt(v, w, fmt.Sprintf("expected true or false, not %q", v.Value))
			return false
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if _, err := strconv.ParseInt(v.Value, 10, 64); err != nil {
			p.addAt(v, w, fmt.Sprintf("expected a whole number, not %q", v.Value))
			return false
		}
	}
	return true
}

func kindName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "text"
	case protoreflect.BoolKind:
		return "true or false"
	default:
		return "number"
	}
}

func fieldList(md protoreflect.MessageDescriptor) string {
	var names []string
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	return strings.Join(names, ", ")
}

// deref follows a YAML alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// unmarshal reads n into m through JSON and protojson (unknown fields are
// errors). Scalars are passed on as JSON strings, except booleans and nulls:
// protojson reads numbers from strings, so an unquoted "10" works both as a
// number and as a text (e.g. a choice).
func unmarshal(n *yaml.Node, m proto.Message) error {
	data, err := json.Marshal(toJSON(n))
	if err != nil {
		return fmt.Errorf("convert to JSON: %w", err)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(data, m)
}

func toJSON(n *yaml.Node) any {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return toJSON(n.Content[0])
	case yaml.AliasNode:
		return toJSON(n.Alias)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			m[n.Content[i].Value] = toJSON(n.Content[i+1])
		}
		return m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			l = append(l, toJSON(c))
		}
		return l
	}
	switch n.Tag {
	case "!!null":
		return nil
	case "!!bool":
		b, _ := strconv.ParseBool(n.Value)
		return b
	}
	return n.Value
}

// where names a place in a course file, from the outside in.
type where []string

func (w where) String() string { return strings.Join(w, " > ") }

// problems collects what is wrong with a file.
type problems struct {
	list   []string
	places []string // where protovalidate found problems
}

// reportedUnder reports whether a proto-rule problem was found at w or
// inside it (so that the same mistake is not reported twice).
func (p *problems) reportedUnder(w where) bool {
	s := w.String()
	for _, pl := range p.places {
		if pl == s || strings.HasPrefix(pl, s+" > ") {
			return true
		}
	}
	return false
}

func (p *problems) add(w where, msg string) {
	if len(w) == 0 {
		p.list = append(p.list, msg)
		return
	}
	p.list = append(p.list, w.String()+": "+msg)
}

func (p *problems) addAt(n *yaml.Node, w where, msg string) {
	prefix := ""
	if n != nil && n.Line > 0 {
		prefix = fmt.Sprintf("line %d: ", n.Line)
	}
	if len(w) > 0 {
		prefix += w.String() + ": "
	}
	p.list = append(p.list, prefix+msg)
}

func (p *problems) empty() bool { return len(p.list) == 0 }

func (p *problems) err() error { return invalid(p.list) }

func invalid(list []string) error {
	const max = 50
	total, more := len(list), ""
	if total > max {
		more = fmt.Sprintf("\n  ... and %d more", total-max)
		list = list[:max]
	}
	msg := fmt.Sprintf("invalid course file: %d problems:\n  %s%s", total, strings.Join(list, "\n  "), more)
	if len(list) == 1 {
		msg = "invalid course file: " + list[0]
	}
	return apperr.Invalid("content", ReasonInvalidContent, msg)
}

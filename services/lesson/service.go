// Package lesson is the lesson service: courses → units → lessons → exercises,
// authored by teachers and admins, and the learner's way through them (attempts,
// graded answers, completion with XP awarded once). It owns the lesson-events and
// user-learning-events topics and consumes user-events (UserDeleted).
package lesson

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/page"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/services/exercise"
)

// Name is the service's name: its consumer group is "lesson-service-group", its
// SQLite file lesson.db, its PostgreSQL schema "lesson".
const Name = "lesson"

// PublicMethods need no access token: none, every call is made by a signed-in
// user (learners see their own status in every list).
var PublicMethods []string

// Topics the service consumes.
var Topics = []string{kafka.TopicUserEvents}

//go:embed migrations/*.sql
var migrations embed.FS

// Config holds the service's settings; it has none yet.
type Config struct{}

// Spec describes the service to the host (platform/service): gRPC :50052, admin
// :8002, consuming user-events.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50052, AdminPort: 8002, Migrations: migrations, PublicMethods: PublicMethods,
		Topics: Topics,
		Register: func(d service.Deps) error {
			s := New(d.DB, cfg)
			lessonv1.RegisterLessonServiceServer(d.GRPC, s)
			s.registerHandlers(d.Router, d.Group)
			return nil
		},
	}
}

// Service implements lessonv1.LessonServiceServer. Proto types stop here, except
// the exercise content protos, which the domain keeps as they are (see [Lesson]).
// Safe for concurrent use.
type Service struct {
	lessonv1.UnimplementedLessonServiceServer
	db    *db.DB
	store Store
	cfg   Config
	now   func() time.Time
}

// New returns the service over an opened, migrated database.
func New(d *db.DB, cfg Config) *Service {
	return &Service{db: d, cfg: cfg, now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }}
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// requireAuthor lets teachers and admins through; learners get PermissionDenied.
func requireAuthor(ctx context.Context) (auth.Claims, error) {
	return auth.Require(ctx, auth.RoleTeacher, auth.RoleAdmin)
}

// ---- authoring ----

// CreateCourse creates an empty course.
func (s *Service) CreateCourse(ctx context.Context, req *lessonv1.CreateCourseRequest) (*lessonv1.CreateCourseResponse, error) {
	c, err := requireAuthor(ctx)
	if err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, "lesson.CreateCourse", c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *lessonv1.CreateCourseResponse { return &lessonv1.CreateCourseResponse{} },
		func(ctx context.Context, tx *db.Tx) (*lessonv1.CreateCourseResponse, error) {
			course, err := NewCourse(newID(), CourseInput{Title: req.GetTitle(), Description: req.GetDescription(),
				SourceLanguage: req.GetSourceLanguage(), TargetLanguage: req.GetTargetLanguage()}, s.now())
			if err != nil {
				return nil, err
			}
			if err := s.store.InsertCourse(ctx, tx, course); err != nil {
				return nil, err
			}
			return &lessonv1.CreateCourseResponse{Course: courseToProto(course)}, nil
		})
}

// UpdateCourse changes the fields present in the request.
func (s *Service) UpdateCourse(ctx context.Context, req *lessonv1.UpdateCourseRequest) (*lessonv1.UpdateCourseResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	var course Course
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if course, err = s.store.CourseByID(ctx, tx, req.GetCourseId()); err != nil {
			return err
		}
		changed, err := course.Apply(CoursePatch{Title: req.Title, Description: req.Description,
			SourceLanguage: req.SourceLanguage, TargetLanguage: req.TargetLanguage}, s.now())
		if err != nil || !changed {
			return err
		}
		return s.store.UpdateCourse(ctx, tx, course)
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.UpdateCourseResponse{Course: courseToProto(course)}, nil
}

// CreateUnit adds a unit at the end of a course.
func (s *Service) CreateUnit(ctx context.Context, req *lessonv1.CreateUnitRequest) (*lessonv1.CreateUnitResponse, error) {
	c, err := requireAuthor(ctx)
	if err != nil {
		return nil, err
	}
	if err := CheckTitle(req.GetTitle()); err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, "lesson.CreateUnit", c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *lessonv1.CreateUnitResponse { return &lessonv1.CreateUnitResponse{} },
		func(ctx context.Context, tx *db.Tx) (*lessonv1.CreateUnitResponse, error) {
			if _, err := s.store.CourseByID(ctx, tx, req.GetCourseId()); err != nil {
				return nil, err
			}
			units, err := s.store.UnitsOfCourse(ctx, tx, req.GetCourseId())
			if err != nil {
				return nil, err
			}
			now := s.now()
			u := Unit{ID: newID(), CourseID: req.GetCourseId(), Title: trim(req.GetTitle()), Description: trim(req.GetDescription()),
				Position: int32(len(units) + 1), CreatedAt: now, UpdatedAt: now}
			if err := s.store.InsertUnit(ctx, tx, u); err != nil {
				return nil, err
			}
			return &lessonv1.CreateUnitResponse{Unit: unitToProto(u)}, nil
		})
}

// UpdateUnit changes the fields present in the request; a new position shifts
// the other units of the course.
func (s *Service) UpdateUnit(ctx context.Context, req *lessonv1.UpdateUnitRequest) (*lessonv1.UpdateUnitResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	if req.Title != nil {
		if err := CheckTitle(req.GetTitle()); err != nil {
			return nil, err
		}
	}
	var u Unit
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if u, err = s.store.UnitByID(ctx, tx, req.GetUnitId()); err != nil {
			return err
		}
		before := u
		setTrimmed(&u.Title, req.Title)
		setTrimmed(&u.Description, req.Description)
		if req.Position != nil {
			units, err := s.store.UnitsOfCourse(ctx, tx, u.CourseID)
			if err != nil {
				return err
			}
			order := Move(unitIDs(units), u.ID, req.GetPosition())
			if err := s.store.SetUnitPositions(ctx, tx, order); err != nil {
				return err
			}
			u.Position = int32(indexOf(order, u.ID) + 1)
		}
		if u == before {
			return nil
		}
		u.UpdatedAt = s.now()
		return s.store.UpdateUnit(ctx, tx, u)
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.UpdateUnitResponse{Unit: unitToProto(u)}, nil
}

// CreateLesson adds a draft lesson at the end of a unit.
func (s *Service) CreateLesson(ctx context.Context, req *lessonv1.CreateLessonRequest) (*lessonv1.CreateLessonResponse, error) {
	c, err := requireAuthor(ctx)
	if err != nil {
		return nil, err
	}
	words := wordsFromProto(req.GetWords())
	if err := CheckTitle(req.GetTitle()); err != nil {
		return nil, err
	}
	if err := CheckWords("words", words); err != nil {
		return nil, err
	}
	for i, ex := range req.GetExercises() {
		if ex.GetId() != "" {
			return nil, apperr.Invalid(fmt.Sprintf("exercises[%d].id", i), "EXERCISE_ID_NOT_EMPTY", "exercises of a new lesson must have empty ids")
		}
	}
	if err := CheckExercises("exercises", req.GetExercises()); err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, "lesson.CreateLesson", c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *lessonv1.CreateLessonResponse { return &lessonv1.CreateLessonResponse{} },
		func(ctx context.Context, tx *db.Tx) (*lessonv1.CreateLessonResponse, error) {
			u, err := s.store.UnitByID(ctx, tx, req.GetUnitId())
			if err != nil {
				return nil, err
			}
			siblings, err := s.store.LessonIDsOfUnit(ctx, tx, u.ID)
			if err != nil {
				return nil, err
			}
			exs, err := PlanExercises(nil, req.GetExercises(), newID)
			if err != nil {
				return nil, err
			}
			now := s.now()
			l := Lesson{
				ID: newID(), CourseID: u.CourseID, UnitID: u.ID, Title: trim(req.GetTitle()), Description: trim(req.GetDescription()),
				Position: int32(len(siblings) + 1), XPReward: XPReward(req.GetXpReward()), Words: words, Exercises: exs,
				State: StateDraft, CreatedAt: now, UpdatedAt: now,
			}
			if err := s.store.InsertLesson(ctx, tx, l); err != nil {
				return nil, err
			}
			return &lessonv1.CreateLessonResponse{Lesson: lessonToProto(l)}, nil
		})
}

// GetLessonContent returns a lesson in any state, with its answers.
func (s *Service) GetLessonContent(ctx context.Context, req *lessonv1.GetLessonContentRequest) (*lessonv1.GetLessonContentResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	l, err := s.store.LessonByID(ctx, s.db, req.GetLessonId())
	if err != nil {
		return nil, err
	}
	return &lessonv1.GetLessonContentResponse{Lesson: lessonToProto(l)}, nil
}

// UpdateLesson changes the fields present in the request. Exercises sent with the
// id of one of the lesson's exercises keep it (and learners' answers to it).
func (s *Service) UpdateLesson(ctx context.Context, req *lessonv1.UpdateLessonRequest) (*lessonv1.UpdateLessonResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	if req.Title != nil {
		if err := CheckTitle(req.GetTitle()); err != nil {
			return nil, err
		}
	}
	words := wordsFromProto(req.GetWords())
	if req.GetClearWords() && len(words) > 0 {
		return nil, apperr.Invalid("words", "WORDS_WITH_CLEAR_WORDS", "clear_words removes every word: send either words or clear_words, not both")
	}
	if err := CheckWords("words", words); err != nil {
		return nil, err
	}
	if err := CheckExercises("exercises", req.GetExercises()); err != nil {
		return nil, err
	}
	var l Lesson
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if l, err = s.store.LessonByID(ctx, tx, req.GetLessonId()); err != nil {
			return err
		}
		setTrimmed(&l.Title, req.Title)
		setTrimmed(&l.Description, req.Description)
		if req.XpReward != nil {
			l.XPReward = XPReward(req.GetXpReward())
		}
		if req.Position != nil {
			siblings, err := s.store.LessonIDsOfUnit(ctx, tx, l.UnitID)
			if err != nil {
				return err
			}
			order := Move(siblings, l.ID, req.GetPosition())
			if err := s.store.SetLessonPositions(ctx, tx, order); err != nil {
				return err
			}
			l.Position = int32(indexOf(order, l.ID) + 1)
		}
		switch {
		case req.GetClearWords():
			l.Words = nil
		case len(words) > 0:
			l.Words = words
		}
		if req.GetClearWords() || len(words) > 0 {
			if err := s.store.ReplaceWords(ctx, tx, l.ID, l.Words); err != nil {
				return err
			}
		}
		if len(req.GetExercises()) > 0 {
			exs, err := PlanExercises(exerciseIDs(l.Exercises), req.GetExercises(), newID)
			if err != nil {
				return err
			}
			if err := s.store.ReplaceExercises(ctx, tx, l.ID, exs); err != nil {
				return err
			}
			l.Exercises = exs
		}
		l.UpdatedAt = s.now()
		return s.store.UpdateLesson(ctx, tx, l)
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.UpdateLessonResponse{Lesson: lessonToProto(l)}, nil
}

// PublishLesson makes a lesson visible to learners and publishes LessonPublished;
// publishing a published lesson changes nothing and publishes nothing.
func (s *Service) PublishLesson(ctx context.Context, req *lessonv1.PublishLessonRequest) (*lessonv1.PublishLessonResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	var l Lesson
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if l, err = s.store.LessonByID(ctx, tx, req.GetLessonId()); err != nil {
			return err
		}
		return s.publish(ctx, tx, &l)
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.PublishLessonResponse{Lesson: lessonToProto(l)}, nil
}

// publish publishes l in tx (row and LessonPublished) unless it already is.
func (s *Service) publish(ctx context.Context, tx *db.Tx, l *Lesson) error {
	changed, err := l.Publish(s.now())
	if err != nil || !changed {
		return err
	}
	if err := s.store.UpdateLesson(ctx, tx, *l); err != nil {
		return err
	}
	ev, err := publishedEvent(*l)
	if err != nil {
		return err
	}
	return outbox.Write(ctx, tx, ev)
}

// ArchiveLesson hides a lesson from learners; completions and XP stay.
func (s *Service) ArchiveLesson(ctx context.Context, req *lessonv1.ArchiveLessonRequest) (*lessonv1.ArchiveLessonResponse, error) {
	if _, err := requireAuthor(ctx); err != nil {
		return nil, err
	}
	var l Lesson
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if l, err = s.store.LessonByID(ctx, tx, req.GetLessonId()); err != nil {
			return err
		}
		if !l.Archive(s.now()) {
			return nil
		}
		return s.store.UpdateLesson(ctx, tx, l)
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.ArchiveLessonResponse{Lesson: lessonToProto(l)}, nil
}

// ImportCourse creates or replaces a course from a bundle (admins only). The course
// is matched by slug, units and lessons by key; ids stay across re-imports.
func (s *Service) ImportCourse(ctx context.Context, req *lessonv1.ImportCourseRequest) (*lessonv1.ImportCourseResponse, error) {
	if _, err := auth.Require(ctx, auth.RoleAdmin); err != nil {
		return nil, err
	}
	b := req.GetBundle()
	if b == nil {
		return nil, apperr.Invalid("bundle", "BUNDLE_REQUIRED", "bundle is required")
	}
	if err := checkBundle(b); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := s.importCourse(ctx, b, req.GetPublish())
		if e, ok := apperr.As(err); ok && e.Reason == "COURSE_SLUG_TAKEN" && attempt == 0 {
			continue // a concurrent import created the course: update it instead
		}
		return resp, err
	}
}

func checkBundle(b *lessonv1.CourseBundle) error {
	if err := CheckBundleKeys(b); err != nil {
		return err
	}
	if err := CheckTitle(b.GetTitle()); err != nil {
		return prefixField("bundle", err)
	}
	for i, u := range b.GetUnits() {
		f := fmt.Sprintf("bundle.units[%d]", i)
		if err := CheckTitle(u.GetTitle()); err != nil {
			return prefixField(f, err)
		}
		for k, l := range u.GetLessons() {
			lf := fmt.Sprintf("%s.lessons[%d]", f, k)
			if err := CheckTitle(l.GetTitle()); err != nil {
				return prefixField(lf, err)
			}
			if err := CheckWords(lf+".words", wordsFromProto(l.GetWords())); err != nil {
				return err
			}
			if err := CheckExercises(lf+".exercises", l.GetExercises()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) importCourse(ctx context.Context, b *lessonv1.CourseBundle, publish bool) (*lessonv1.ImportCourseResponse, error) {
	resp := &lessonv1.ImportCourseResponse{UnitIds: map[string]string{}, LessonIds: map[string]string{}}
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		now := s.now()
		course, err := s.store.CourseBySlug(ctx, tx, b.GetSlug())
		switch {
		case apperr.KindOf(err) == apperr.KindNotFound:
			if course, err = NewCourse(newID(), CourseInput{Slug: b.GetSlug(), Title: b.GetTitle(), Description: b.GetDescription(),
				SourceLanguage: b.GetSourceLanguage(), TargetLanguage: b.GetTargetLanguage()}, now); err != nil {
				return prefixField("bundle", err)
			}
			if err := s.store.InsertCourse(ctx, tx, course); err != nil {
				return err
			}
			resp.Created = true
		case err != nil:
			return err
		default:
			title, desc, src, dst := b.GetTitle(), b.GetDescription(), b.GetSourceLanguage(), b.GetTargetLanguage()
			changed, err := course.Apply(CoursePatch{Title: &title, Description: &desc, SourceLanguage: &src, TargetLanguage: &dst}, now)
			if err != nil {
				return prefixField("bundle", err)
			}
			if changed {
				if err := s.store.UpdateCourse(ctx, tx, course); err != nil {
					return err
				}
			}
		}
		resp.Course = courseToProto(course)

		// Units: bundle units first, in bundle order; other units after them.
		units, err := s.store.UnitsOfCourse(ctx, tx, course.ID)
		if err != nil {
			return err
		}
		unitByKey := map[string]Unit{}
		for _, u := range units {
			if u.Key != "" {
				unitByKey[u.Key] = u
			}
		}
		var unitOrder []string
		for i, bu := range b.GetUnits() {
			u, ok := unitByKey[bu.GetKey()]
			next := Unit{ID: newID(), CourseID: course.ID, Key: bu.GetKey(), CreatedAt: now}
			if ok {
				next = u
			}
			next.Title, next.Description, next.Position = trim(bu.GetTitle()), trim(bu.GetDescription()), int32(i+1)
			switch {
			case !ok:
				next.UpdatedAt = now
				err = s.store.InsertUnit(ctx, tx, next)
			case next != u:
				next.UpdatedAt = now
				err = s.store.UpdateUnit(ctx, tx, next)
			}
			if err != nil {
				return err
			}
			resp.UnitIds[bu.GetKey()] = next.ID
			unitOrder = append(unitOrder, next.ID)
		}
		for _, u := range units {
			if indexOf(unitOrder, u.ID) < 0 {
				unitOrder = append(unitOrder, u.ID)
			}
		}
		if err := s.store.SetUnitPositions(ctx, tx, unitOrder); err != nil {
			return err
		}

		// Lessons: matched by key across the course (a lesson may move between units).
		existing, err := s.store.LessonsOfCourse(ctx, tx, course.ID)
		if err != nil {
			return err
		}
		lessonByKey := map[string]Lesson{}
		for _, l := range existing {
			if l.Key != "" {
				lessonByKey[l.Key] = l
			}
		}
		inBundle := map[string]bool{}
		for _, bu := range b.GetUnits() {
			unitID := resp.UnitIds[bu.GetKey()]
			for k, bl := range bu.GetLessons() {
				l, err := s.importLesson(ctx, tx, course.ID, unitID, int32(k+1), bl, lessonByKey, publish, now)
				if err != nil {
					return err
				}
				resp.LessonIds[bl.GetKey()] = l.ID
				inBundle[l.ID] = true
			}
		}
		for _, l := range existing {
			if !inBundle[l.ID] && l.Archive(now) {
				if err := s.store.UpdateLesson(ctx, tx, l); err != nil {
					return err
				}
				resp.ArchivedLessonCount++
			}
		}
		// Renumber every unit: the bundle's lessons first, in bundle order, then the others.
		for _, unitID := range unitOrder {
			ids, err := s.store.LessonIDsOfUnit(ctx, tx, unitID)
			if err != nil {
				return err
			}
			var order []string
			for _, bu := range b.GetUnits() {
				if resp.UnitIds[bu.GetKey()] != unitID {
					continue
				}
				for _, bl := range bu.GetLessons() {
					order = append(order, resp.LessonIds[bl.GetKey()])
				}
			}
			for _, id := range ids {
				if !inBundle[id] {
					order = append(order, id)
				}
			}
			if err := s.store.SetLessonPositions(ctx, tx, order); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// importLesson creates or updates one lesson of a bundle and publishes it when
// asked to.
func (s *Service) importLesson(ctx context.Context, tx *db.Tx, courseID, unitID string, pos int32, bl *lessonv1.LessonBundle,
	byKey map[string]Lesson, publish bool, now time.Time) (Lesson, error) {
	l, ok := byKey[bl.GetKey()]
	var keep []string
	if ok {
		var err error
		if keep, err = s.store.ExerciseIDs(ctx, tx, l.ID); err != nil {
			return Lesson{}, err
		}
	} else {
		l = Lesson{ID: newID(), CourseID: courseID, Key: bl.GetKey(), State: StateDraft, CreatedAt: now}
	}
	l.UnitID, l.Position, l.Title, l.Description = unitID, pos, trim(bl.GetTitle()), trim(bl.GetDescription())
	l.XPReward, l.Words = XPReward(bl.GetXpReward()), wordsFromProto(bl.GetWords())
	l.Exercises = ReplaceByPosition(keep, bl.GetExercises(), newID)
	l.UpdatedAt = now
	if ok {
		if err := s.store.UpdateLesson(ctx, tx, l); err != nil {
			return Lesson{}, err
		}
		if err := s.store.ReplaceWords(ctx, tx, l.ID, l.Words); err != nil {
			return Lesson{}, err
		}
		if err := s.store.ReplaceExercises(ctx, tx, l.ID, l.Exercises); err != nil {
			return Lesson{}, err
		}
	} else if err := s.store.InsertLesson(ctx, tx, l); err != nil {
		return Lesson{}, err
	}
	if publish {
		if err := s.publish(ctx, tx, &l); err != nil {
			return Lesson{}, err
		}
	}
	return l, nil
}

// ---- learners ----

// ListCourses lists the courses holding at least one published lesson, with the
// caller's progress.
func (s *Service) ListCourses(ctx context.Context, req *lessonv1.ListCoursesRequest) (*lessonv1.ListCoursesResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	cur, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	list, err := s.store.ListCourses(ctx, s.db, c.UserID, cur.ID, size)
	if err != nil {
		return nil, err
	}
	resp := &lessonv1.ListCoursesResponse{
		NextPageToken: page.Next(list, size, func(cs CourseSummary) page.Cursor { return page.Cursor{ID: cs.ID} }),
	}
	for _, cs := range list {
		resp.Courses = append(resp.Courses, &lessonv1.CourseSummary{
			Course: courseToProto(cs.Course), UnitCount: cs.UnitCount, LessonCount: cs.LessonCount,
			CompletedLessonCount: cs.CompletedCount,
		})
	}
	return resp, nil
}

// GetCourse returns the outline of a course that holds at least one published
// lesson, with the caller's status of each lesson.
func (s *Service) GetCourse(ctx context.Context, req *lessonv1.GetCourseRequest) (*lessonv1.GetCourseResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	course, err := s.store.CourseByID(ctx, s.db, req.GetCourseId())
	if err != nil {
		return nil, err
	}
	lessons, err := s.store.PublishedLessons(ctx, s.db, course.ID)
	if err != nil {
		return nil, err
	}
	if len(lessons) == 0 {
		return nil, errCourseNotFound // nothing a learner may see yet
	}
	units, err := s.store.UnitsOfCourse(ctx, s.db, course.ID)
	if err != nil {
		return nil, err
	}
	completed, open, err := s.store.LearnerState(ctx, s.db, c.UserID, course.ID)
	if err != nil {
		return nil, err
	}
	order := make([]string, len(lessons))
	for i, l := range lessons {
		order[i] = l.ID
	}
	statuses := Statuses(order, completed, open)
	outlines := map[string]*lessonv1.UnitOutline{}
	for i, l := range lessons {
		o := outlines[l.UnitID]
		if o == nil {
			o = &lessonv1.UnitOutline{}
			outlines[l.UnitID] = o
		}
		o.Lessons = append(o.Lessons, &lessonv1.LessonSummary{
			Id: l.ID, Title: l.Title, Description: l.Description, Position: l.Position, XpReward: l.XPReward,
			WordCount: l.WordCount, ExerciseCount: l.ExerciseCount, Status: statusToProto(statuses[i]),
		})
		if statuses[i] == StatusCompleted {
			o.CompletedLessonCount++
		}
	}
	resp := &lessonv1.GetCourseResponse{Course: courseToProto(course)}
	for _, u := range units {
		if o := outlines[u.ID]; o != nil {
			o.Unit = unitToProto(u)
			resp.Units = append(resp.Units, o)
		}
	}
	return resp, nil
}

// publishedLesson returns a lesson a learner may see; drafts and archived lessons
// are not found.
func (s *Service) publishedLesson(ctx context.Context, q db.Querier, id string) (Lesson, error) {
	l, err := s.store.LessonByID(ctx, q, id)
	if err != nil {
		return Lesson{}, err
	}
	if l.State != StatePublished {
		return Lesson{}, errLessonNotFound
	}
	return l, nil
}

// statusOf computes the learner's status of a published lesson.
func (s *Service) statusOf(ctx context.Context, q db.Querier, userID string, l Lesson) (Status, error) {
	order, err := s.store.PublishedOrder(ctx, q, l.CourseID)
	if err != nil {
		return 0, err
	}
	completed, open, err := s.store.LearnerState(ctx, q, userID, l.CourseID)
	if err != nil {
		return 0, err
	}
	i := indexOf(order, l.ID)
	if i < 0 {
		return 0, errLessonNotFound
	}
	return Statuses(order, completed, open)[i], nil
}

// GetLesson returns a published lesson without its answers. A locked lesson can
// be looked at (its status says it is locked) but not started.
func (s *Service) GetLesson(ctx context.Context, req *lessonv1.GetLessonRequest) (*lessonv1.GetLessonResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	l, err := s.publishedLesson(ctx, s.db, req.GetLessonId())
	if err != nil {
		return nil, err
	}
	st, err := s.statusOf(ctx, s.db, c.UserID, l)
	if err != nil {
		return nil, err
	}
	v := &lessonv1.LessonView{
		Id: l.ID, CourseId: l.CourseID, UnitId: l.UnitID, Title: l.Title, Description: l.Description,
		XpReward: l.XPReward, Status: statusToProto(st), Words: wordsToProto(l.Words),
	}
	for _, ex := range l.Exercises {
		v.Exercises = append(v.Exercises, exercise.View(ex))
	}
	return &lessonv1.GetLessonResponse{Lesson: v}, nil
}

// StartLesson starts an attempt at a lesson that is not locked for the caller
// and publishes LessonStarted. A retry with the same idempotency key returns the
// attempt already started.
func (s *Service) StartLesson(ctx context.Context, req *lessonv1.StartLessonRequest) (*lessonv1.StartLessonResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	return idempotency.Do(ctx, s.db, "lesson.StartLesson", c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *lessonv1.StartLessonResponse { return &lessonv1.StartLessonResponse{} },
		func(ctx context.Context, tx *db.Tx) (*lessonv1.StartLessonResponse, error) {
			l, err := s.publishedLesson(ctx, tx, req.GetLessonId())
			if err != nil {
				return nil, err
			}
			st, err := s.statusOf(ctx, tx, c.UserID, l)
			if err != nil {
				return nil, err
			}
			if st == StatusLocked {
				return nil, apperr.New(apperr.KindFailedPrecondition, "LESSON_LOCKED",
					"this lesson is locked: complete the lesson before it first")
			}
			a := Attempt{ID: newID(), UserID: c.UserID, LessonID: l.ID, StartedAt: s.now(), ExerciseCount: int32(len(l.Exercises))}
			if err := s.store.InsertAttempt(ctx, tx, a); err != nil {
				return nil, err
			}
			ev, err := startedEvent(a)
			if err != nil {
				return nil, err
			}
			if err := outbox.Write(ctx, tx, ev); err != nil {
				return nil, err
			}
			return &lessonv1.StartLessonResponse{Attempt: &lessonv1.Attempt{
				Id: a.ID, LessonId: a.LessonID, StartedAt: timestamppb.New(a.StartedAt), ExerciseCount: a.ExerciseCount,
			}}, nil
		})
}

// ownAttempt returns the caller's attempt; another learner's attempt is not found,
// so that its existence is never revealed.
func (s *Service) ownAttempt(ctx context.Context, q db.Querier, userID, id string) (Attempt, error) {
	a, err := s.store.AttemptByID(ctx, q, id)
	if err != nil {
		return Attempt{}, err
	}
	if a.UserID != userID {
		return Attempt{}, errAttemptNotFound
	}
	return a, nil
}

// GetAttempt returns one of the caller's attempts with its first answers.
func (s *Service) GetAttempt(ctx context.Context, req *lessonv1.GetAttemptRequest) (*lessonv1.GetAttemptResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.ownAttempt(ctx, s.db, c.UserID, req.GetAttemptId())
	if err != nil {
		return nil, err
	}
	total, answered, correct, err := s.store.Tally(ctx, s.db, a.ID, a.LessonID)
	if err != nil {
		return nil, err
	}
	answers, err := s.store.Answers(ctx, s.db, a.ID)
	if err != nil {
		return nil, err
	}
	out := &lessonv1.Attempt{
		Id: a.ID, LessonId: a.LessonID, StartedAt: timestamppb.New(a.StartedAt),
		ExerciseCount: int32(total), AnsweredCount: int32(answered), CorrectCount: int32(correct),
	}
	if a.CompletedAt != nil {
		out.CompletedAt = timestamppb.New(*a.CompletedAt)
		out.ExerciseCount, out.CorrectCount = a.ExerciseCount, a.CorrectCount // as scored
		out.Completion = completionToProto(a, false)
	}
	for _, r := range answers {
		out.Results = append(out.Results, &lessonv1.AnswerResult{
			ExerciseId: r.ExerciseID, Correct: r.Correct, ExpectedAnswer: r.Expected, Explanation: r.Explanation,
		})
	}
	return &lessonv1.GetAttemptResponse{Attempt: out}, nil
}

var errAttemptCompleted = apperr.New(apperr.KindFailedPrecondition, "ATTEMPT_COMPLETED",
	"this attempt is completed: start the lesson again to answer more")

// AnswerExercise grades an answer at once. The first answer to an exercise counts
// (and publishes ExerciseAnswered); later ones are graded and change nothing.
func (s *Service) AnswerExercise(ctx context.Context, req *lessonv1.AnswerExerciseRequest) (*lessonv1.AnswerExerciseResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetAnswer() == nil {
		return nil, apperr.Invalid("answer", "ANSWER_REQUIRED", "answer is required")
	}
	return idempotency.Do(ctx, s.db, "lesson.AnswerExercise", c.UserID, idempotency.RequestKey(ctx, req.GetIdempotencyKey()),
		func() *lessonv1.AnswerExerciseResponse { return &lessonv1.AnswerExerciseResponse{} },
		func(ctx context.Context, tx *db.Tx) (*lessonv1.AnswerExerciseResponse, error) {
			a, err := s.ownAttempt(ctx, tx, c.UserID, req.GetAttemptId())
			if err != nil {
				return nil, err
			}
			if a.CompletedAt != nil {
				return nil, errAttemptCompleted
			}
			l, err := s.store.LessonByID(ctx, tx, a.LessonID)
			if err != nil {
				return nil, err
			}
			ex := findExercise(l.Exercises, req.GetExerciseId())
			if ex == nil {
				return nil, apperr.Invalid("exercise_id", "EXERCISE_NOT_IN_LESSON",
					fmt.Sprintf("exercise %s is not an exercise of this attempt's lesson", req.GetExerciseId()))
			}
			res, err := exercise.Grade(ex, req.GetAnswer())
			if err != nil {
				return nil, err
			}
			now := s.now()
			open, err := s.store.TouchOpenAttempt(ctx, tx, a.ID, now)
			if err != nil {
				return nil, err
			}
			if !open { // completed concurrently
				return nil, errAttemptCompleted
			}
			rec := AnswerRecord{ExerciseID: ex.GetId(), Correct: res.Correct, Expected: res.Expected, Explanation: res.Explanation, AnsweredAt: now}
			body, err := proto.Marshal(req.GetAnswer())
			if err != nil {
				return nil, fmt.Errorf("encode answer: %w", err)
			}
			first, err := s.store.InsertFirstAnswer(ctx, tx, a.ID, rec, body)
			if err != nil {
				return nil, err
			}
			if first {
				ev, err := answeredEvent(a, rec)
				if err != nil {
					return nil, err
				}
				if err := outbox.Write(ctx, tx, ev); err != nil {
					return nil, err
				}
			}
			return &lessonv1.AnswerExerciseResponse{Result: &lessonv1.AnswerResult{
				ExerciseId: ex.GetId(), Correct: res.Correct, ExpectedAnswer: res.Expected, Explanation: res.Explanation,
			}}, nil
		})
}

// CompleteLesson scores an attempt from its first answers (unanswered exercises
// count as wrong) and publishes LessonCompleted, once per attempt. The lesson's XP
// is awarded only by the learner's first completion of the lesson: the
// completions row is inserted once, whatever the number of concurrent calls.
// Completing a completed attempt returns its outcome with already_completed set.
func (s *Service) CompleteLesson(ctx context.Context, req *lessonv1.CompleteLessonRequest) (*lessonv1.CompleteLessonResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	var out *lessonv1.CompletionResult
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		a, err := s.ownAttempt(ctx, tx, c.UserID, req.GetAttemptId())
		if err != nil {
			return err
		}
		if a.CompletedAt != nil {
			out = completionToProto(a, true)
			return nil
		}
		now := s.now()
		claimed, err := s.store.ClaimCompletion(ctx, tx, a.ID, now)
		if err != nil {
			return err
		}
		if !claimed { // a concurrent call completed it and committed first
			if a, err = s.store.AttemptByID(ctx, tx, a.ID); err != nil {
				return err
			}
			out = completionToProto(a, true)
			return nil
		}
		l, err := s.store.LessonByID(ctx, tx, a.LessonID)
		if err != nil {
			return err
		}
		total, _, correct, err := s.store.Tally(ctx, tx, a.ID, l.ID)
		if err != nil {
			return err
		}
		a.CompletedAt = &now
		a.Score, a.Accuracy = Score(correct, total)
		a.CorrectCount, a.ExerciseCount = int32(correct), int32(total)
		first, err := s.store.InsertCompletion(ctx, tx, a, l.XPReward, now)
		if err != nil {
			return err
		}
		if first {
			a.XPAwarded = l.XPReward
		}
		if err := s.store.SaveOutcome(ctx, tx, a); err != nil {
			return err
		}
		ev, err := completedEvent(a, l, first)
		if err != nil {
			return err
		}
		if err := outbox.Write(ctx, tx, ev); err != nil {
			return err
		}
		out = completionToProto(a, false)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &lessonv1.CompleteLessonResponse{Result: out}, nil
}

// ---- helpers and proto mapping ----

func trim(s string) string {
	setTrimmed(&s, &s)
	return s
}

func indexOf(ids []string, id string) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}

func unitIDs(units []Unit) []string {
	out := make([]string, len(units))
	for i, u := range units {
		out[i] = u.ID
	}
	return out
}

func exerciseIDs(exs []*lessonv1.Exercise) []string {
	out := make([]string, len(exs))
	for i, ex := range exs {
		out[i] = ex.GetId()
	}
	return out
}

func findExercise(exs []*lessonv1.Exercise, id string) *lessonv1.Exercise {
	for _, ex := range exs {
		if ex.GetId() == id {
			return ex
		}
	}
	return nil
}

// completionToProto is the outcome of a completed attempt. A repeated completion
// (already) reports the same score and no XP: nothing was awarded by that call.
func completionToProto(a Attempt, already bool) *lessonv1.CompletionResult {
	r := &lessonv1.CompletionResult{
		AttemptId: a.ID, LessonId: a.LessonID, Score: a.Score, Accuracy: a.Accuracy, CorrectCount: a.CorrectCount,
		ExerciseCount: a.ExerciseCount, XpAwarded: a.XPAwarded, AlreadyCompleted: already,
	}
	if already {
		r.XpAwarded = 0
	}
	if a.CompletedAt != nil {
		r.CompletedAt = timestamppb.New(*a.CompletedAt)
	}
	return r
}

func courseToProto(c Course) *lessonv1.Course {
	return &lessonv1.Course{
		Id: c.ID, Slug: c.Slug, Title: c.Title, Description: c.Description, SourceLanguage: c.SourceLanguage,
		TargetLanguage: c.TargetLanguage, CreatedAt: timestamppb.New(c.CreatedAt), UpdatedAt: timestamppb.New(c.UpdatedAt),
	}
}

func unitToProto(u Unit) *lessonv1.Unit {
	return &lessonv1.Unit{
		Id: u.ID, CourseId: u.CourseID, Title: u.Title, Description: u.Description, Position: u.Position,
		CreatedAt: timestamppb.New(u.CreatedAt), UpdatedAt: timestamppb.New(u.UpdatedAt),
	}
}

func lessonToProto(l Lesson) *lessonv1.Lesson {
	p := &lessonv1.Lesson{
		Id: l.ID, CourseId: l.CourseID, UnitId: l.UnitID, Title: l.Title, Description: l.Description,
		Position: l.Position, XpReward: l.XPReward, Words: wordsToProto(l.Words), Exercises: l.Exercises,
		State: stateToProto(l.State), CreatedAt: timestamppb.New(l.CreatedAt), UpdatedAt: timestamppb.New(l.UpdatedAt),
	}
	if l.PublishedAt != nil {
		p.PublishedAt = timestamppb.New(*l.PublishedAt)
	}
	return p
}

func wordsFromProto(ws []*lessonv1.Word) []Word {
	out := make([]Word, 0, len(ws))
	for _, w := range ws {
		out = append(out, Word{
			Term: trim(w.GetTerm()), Translation: trim(w.GetTranslation()), PartOfSpeech: trim(w.GetPartOfSpeech()),
			Example: trim(w.GetExample()), ExampleTranslation: trim(w.GetExampleTranslation()), AudioMediaID: w.GetAudioMediaId(),
		})
	}
	return out
}

func wordsToProto(ws []Word) []*lessonv1.Word {
	out := make([]*lessonv1.Word, 0, len(ws))
	for _, w := range ws {
		out = append(out, &lessonv1.Word{
			Term: w.Term, Translation: w.Translation, PartOfSpeech: w.PartOfSpeech, Example: w.Example,
			ExampleTranslation: w.ExampleTranslation, AudioMediaId: w.AudioMediaID,
		})
	}
	return out
}

func stateToProto(s State) lessonv1.PublicationState {
	switch s {
	case StateDraft:
		return lessonv1.PublicationState_PUBLICATION_STATE_DRAFT
	case StatePublished:
		return lessonv1.PublicationState_PUBLICATION_STATE_PUBLISHED
	case StateArchived:
		return lessonv1.PublicationState_PUBLICATION_STATE_ARCHIVED
	}
	return lessonv1.PublicationState_PUBLICATION_STATE_UNSPECIFIED
}

func statusToProto(s Status) lessonv1.LessonStatus {
	switch s {
	case StatusLocked:
		return lessonv1.LessonStatus_LESSON_STATUS_LOCKED
	case StatusAvailable:
		return lessonv1.LessonStatus_LESSON_STATUS_AVAILABLE
	case StatusInProgress:
		return lessonv1.LessonStatus_LESSON_STATUS_IN_PROGRESS
	case StatusCompleted:
		return lessonv1.LessonStatus_LESSON_STATUS_COMPLETED
	}
	return lessonv1.LessonStatus_LESSON_STATUS_UNSPECIFIED
}

package system

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/clock"
	"github.com/puchi-dev/puchi/services/content"
)

// SystemUserID is the subject of tokens the platform mints for itself (content
// seeding, `puchi content import`); it is no learner's id.
const SystemUserID = "00000000-0000-7000-8000-000000000000"

// AdminContext returns ctx carrying a short-lived admin token minted with issuer,
// for calls the platform makes on its own behalf.
func AdminContext(ctx context.Context, issuer *auth.Issuer) (context.Context, error) {
	tok, _, err := issuer.Issue(SystemUserID, auth.RoleAdmin, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}

// ImportContent loads a course bundle through the lesson and quiz services' own
// RPCs (never their databases), so that it publishes the same events an author's
// edits would.
func ImportContent(ctx context.Context, issuer *auth.Issuer, lessonConn, quizConn *grpc.ClientConn, b *content.Bundle) (content.Summary, error) {
	actx, err := AdminContext(ctx, issuer)
	if err != nil {
		return content.Summary{}, err
	}
	return content.Import(actx, lessonv1.NewLessonServiceClient(lessonConn), quizv1.NewQuizServiceClient(quizConn), b)
}

// demoSeeder loads the built-in demo course once the lesson and quiz services
// serve, if no course exists yet: a fresh `puchi run` is ready to learn at once,
// and a teacher's later edits are never overwritten.
type demoSeeder struct {
	sys          *System
	issuer       *auth.Issuer
	lesson, quiz *grpc.ClientConn
}

func (d *demoSeeder) Name() string { return "demo content" }

func (d *demoSeeder) Run(ctx context.Context) error {
	for _, c := range []*grpc.ClientConn{d.lesson, d.quiz} {
		if err := waitServing(ctx, c); err != nil {
			return nil // shutting down before we could seed: nothing to do
		}
	}
	actx, err := AdminContext(ctx, d.issuer)
	if err != nil {
		return err
	}
	list, err := lessonv1.NewLessonServiceClient(d.lesson).ListCourses(actx, &lessonv1.ListCoursesRequest{PageSize: 1})
	if err != nil {
		d.sys.Log.Warn("demo content: cannot list courses; not seeding", "err", err)
		return nil
	}
	if len(list.GetCourses()) > 0 {
		return nil
	}
	b, err := content.Demo()
	if err != nil {
		return fmt.Errorf("demo content: %w", err)
	}
	sum, err := ImportContent(ctx, d.issuer, d.lesson, d.quiz, b)
	if err != nil {
		d.sys.Log.Error("demo content: import failed", "err", err)
		return nil
	}
	d.sys.Log.Info("demo course loaded", "course_id", sum.CourseID, "units", sum.Units, "lessons", sum.Lessons,
		"words", sum.Words, "quizzes", sum.Quizzes)
	d.sys.demoLoaded.Store(true)
	return nil
}

// waitServing blocks until conn's server reports SERVING or ctx ends.
func waitServing(ctx context.Context, conn *grpc.ClientConn) error {
	hc := healthpb.NewHealthClient(conn)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if !clock.Sleep(ctx, 100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

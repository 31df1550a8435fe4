// Package progress is the progress service: XP, levels, streaks, daily goals,
// achievements, the weekly leaderboard and activity stats, all built from the
// lesson, quiz, vocabulary and user events. It owns the progress-events topic.
package progress

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: consumer group "progress-service-group", SQLite
// file progress.db, PostgreSQL schema "progress".
const Name = "progress"

//go:embed migrations/*.sql
var migrations embed.FS

// Spec describes the service to the host: gRPC :50053, admin :8003, consuming
// lesson-, quiz-, vocabulary- and user-events. Display names for the leaderboard
// come from the user service (deps.Dial("user")), so list it after user.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50053, AdminPort: 8003, Migrations: migrations, Topics: Topics,
		Register: func(d service.Deps) error {
			var names NameLookup
			if d.Dial != nil {
				conn, err := d.Dial("user")
				if err != nil {
					return fmt.Errorf("progress: dial user: %w", err)
				}
				names = UserNames{Client: userv1.NewUserServiceClient(conn)}
			}
			s, err := New(d.DB, names, cfg)
			if err != nil {
				return err
			}
			if d.Log != nil {
				s.log = d.Log
			}
			progressv1.RegisterProgressServiceServer(d.GRPC, s)
			s.Subscribe(d.Router, d.Group)
			return nil
		},
	}
}

// Config holds the XP amounts and rules. A zero field takes its default.
type Config struct {
	QuizPassXP         int32   // XP for the first pass of a quiz (default 20)
	QuizPerfectBonusXP int32   // added when that pass is perfect (default 10)
	ReviewXP           int32   // XP per word review (default 1)
	GraduationXP       int32   // XP, instead of ReviewXP, for a card's first graduation to review (default 2)
	LevelThresholds    []int64 // total XP to reach level n at index n-1; must start at 0 and increase (default DefaultLevelThresholds)
	LeaderboardSize    int32   // top entries when a request gives no limit (default 10, at most 100)
	StreakFreezeEvery  int32   // a freeze is earned at every multiple of this streak length (default 7)
	MaxStreakFreezes   int32   // freezes held at most (default 2)
	Now                func() time.Time
}

func (c Config) withDefaults() Config {
	def := func(v *int32, d int32) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.QuizPassXP, DefaultQuizPassXP)
	def(&c.QuizPerfectBonusXP, DefaultQuizPerfectBonusXP)
	def(&c.ReviewXP, DefaultReviewXP)
	def(&c.GraduationXP, DefaultGraduationXP)
	def(&c.LeaderboardSize, DefaultLeaderboardSize)
	def(&c.StreakFreezeEvery, DefaultStreakFreezeEvery)
	def(&c.MaxStreakFreezes, DefaultMaxStreakFreezes)
	c.LeaderboardSize = min(c.LeaderboardSize, maxLeaderboard)
	if len(c.LevelThresholds) == 0 {
		c.LevelThresholds = DefaultLevelThresholds
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

const maxLeaderboard = 100

// NameLookup finds display names by user id; ids it does not know are left out.
// The service calls it once per leaderboard request.
type NameLookup interface {
	DisplayNames(ctx context.Context, userIDs []string) (map[string]string, error)
}

// UserNames looks names up with the user service's BatchGetDisplayNames. The
// caller's token travels with ctx (the platform's client interceptor).
type UserNames struct{ Client userv1.UserServiceClient }

// DisplayNames asks in one call; more than 100 ids (the RPC's limit: a 100-entry
// leaderboard whose caller ranks below it) take a second call.
func (u UserNames) DisplayNames(ctx context.Context, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for chunk := range slices.Chunk(ids, 100) {
		resp, err := u.Client.BatchGetDisplayNames(ctx, &userv1.BatchGetDisplayNamesRequest{UserIds: chunk})
		if err != nil {
			return out, err
		}
		for id, name := range resp.GetDisplayNames() {
			out[id] = name
		}
	}
	return out, nil
}

// Service implements progressv1.ProgressServiceServer and the event handlers
// ([Service.Subscribe]). Proto types stop here and in events.go. Safe for
// concurrent use.
type Service struct {
	progressv1.UnimplementedProgressServiceServer
	db    *db.DB
	store Store
	names NameLookup // nil: leaderboard entries have no display names
	cfg   Config
	rules Rules
	log   *slog.Logger
}

// New returns the service over an opened, migrated database. names may be nil.
func New(d *db.DB, names NameLookup, cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := CheckLevelThresholds(cfg.LevelThresholds); err != nil {
		return nil, err
	}
	return &Service{
		db: d, names: names, cfg: cfg, log: slog.Default(),
		rules: Rules{LevelThresholds: cfg.LevelThresholds, FreezeEvery: cfg.StreakFreezeEvery, MaxFreezes: cfg.MaxStreakFreezes},
	}, nil
}

// GetMyProgress returns the caller's standing. A learner no event has reached yet
// gets level 1, no XP, the default goal and UTC.
func (s *Service) GetMyProgress(ctx context.Context, _ *progressv1.GetMyProgressRequest) (*progressv1.GetMyProgressResponse, error) {
	id, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	l, _, err := s.store.Learner(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	today := LocalDate(l.Timezone, s.cfg.Now())
	day, err := s.store.Day(ctx, s.db, id, today)
	if err != nil {
		return nil, err
	}
	lvl := LevelFor(l.TotalXP, s.rules.LevelThresholds)
	return &progressv1.GetMyProgressResponse{Progress: &progressv1.Progress{
		TotalXp: l.TotalXP, Level: lvl.Level, XpIntoLevel: lvl.XPIntoLevel, XpForNextLevel: lvl.XPForNext,
		CurrentStreakDays: l.Streak.CurrentOn(today), LongestStreakDays: l.Streak.Longest, StreakFreezes: l.Streak.Freezes,
		TodayXp: day.XP, DailyGoalXp: l.DailyGoalXP, DailyGoalReached: day.GoalReached,
		WordsLearned: l.WordsLearned, LessonsCompleted: l.Lessons, QuizzesPassed: l.QuizzesPass,
		Accuracy: l.Accuracy(), LocalDate: today,
	}}, nil
}

// ListAchievements returns the whole table: unlocked ones first (most recent
// first), then locked ones in table order.
func (s *Service) ListAchievements(ctx context.Context, _ *progressv1.ListAchievementsRequest) (*progressv1.ListAchievementsResponse, error) {
	id, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	l, _, err := s.store.Learner(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	held, err := s.store.Unlocked(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	var unlocked, locked []*progressv1.Achievement
	for _, a := range Achievements {
		pa := &progressv1.Achievement{
			Id: a.ID, Title: a.Title, Description: a.Description, Progress: a.Progress(l, s.rules), Target: a.Target,
		}
		if at, ok := held[a.ID]; ok {
			pa.Unlocked, pa.UnlockedAt, pa.Progress = true, timestamppb.New(at), a.Target
			unlocked = append(unlocked, pa)
		} else {
			locked = append(locked, pa)
		}
	}
	slices.SortStableFunc(unlocked, func(a, b *progressv1.Achievement) int {
		return b.GetUnlockedAt().AsTime().Compare(a.GetUnlockedAt().AsTime())
	})
	return &progressv1.ListAchievementsResponse{Achievements: append(unlocked, locked...)}, nil
}

// GetLeaderboard returns the week's top learners and the caller's own entry.
// Display names come from the user service in one call; if it fails, the
// leaderboard is still returned, with empty display names (a leaderboard without
// names beats no leaderboard; the failure is logged).
func (s *Service) GetLeaderboard(ctx context.Context, req *progressv1.GetLeaderboardRequest) (*progressv1.GetLeaderboardResponse, error) {
	id, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	start := WeekStart(s.cfg.Now())
	if req.GetWeek() != "" {
		var ok bool
		if start, ok = ParseISOWeek(req.GetWeek()); !ok {
			return nil, apperr.Invalid("week", "WEEK_INVALID", fmt.Sprintf("week %q does not exist: use an ISO 8601 week such as 2025-W07", req.GetWeek()))
		}
	}
	limit := int(s.cfg.LeaderboardSize)
	if req.GetLimit() > 0 {
		limit = int(min(req.GetLimit(), maxLeaderboard))
	}
	week := start.Format(dateLayout)
	top, err := s.store.TopOfWeek(ctx, s.db, week, limit)
	if err != nil {
		return nil, err
	}
	me, err := s.store.RankInWeek(ctx, s.db, week, id)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(top)+1)
	for _, r := range top {
		ids = append(ids, r.UserID)
	}
	if !slices.Contains(ids, id) {
		ids = append(ids, id)
	}
	names := map[string]string{}
	if s.names != nil {
		got, err := s.names.DisplayNames(ctx, ids)
		if err != nil {
			s.log.WarnContext(ctx, "progress: display names unavailable; leaderboard served without them", "err", err)
		}
		for k, v := range got {
			names[k] = v
		}
	}
	entry := func(r Ranked) *progressv1.LeaderboardEntry {
		return &progressv1.LeaderboardEntry{Rank: r.Rank, UserId: r.UserID, DisplayName: names[r.UserID], Xp: r.XP}
	}
	resp := &progressv1.GetLeaderboardResponse{
		Week: ISOWeek(start), StartsAt: timestamppb.New(start), EndsAt: timestamppb.New(start.AddDate(0, 0, 7)),
		MyEntry: entry(me),
	}
	for _, r := range top {
		resp.Entries = append(resp.Entries, entry(r))
	}
	return resp, nil
}

// GetStats returns one entry per local day of the span (ending today, in the
// learner's zone), and the XP of every leaderboard week the span touches.
func (s *Service) GetStats(ctx context.Context, req *progressv1.GetStatsRequest) (*progressv1.GetStatsResponse, error) {
	id, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	n := int(req.GetDays())
	if n <= 0 {
		n = 30
	}
	n = min(n, 365)
	l, _, err := s.store.Learner(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	today := LocalDate(l.Timezone, s.cfg.Now())
	from := AddDays(today, -(n - 1))
	days, err := s.store.Days(ctx, s.db, id, from, today)
	if err != nil {
		return nil, err
	}
	byDate := make(map[string]Day, len(days))
	for _, d := range days {
		byDate[d.Date] = d
	}
	resp := &progressv1.GetStatsResponse{}
	for i := range n {
		date := AddDays(from, i)
		d := byDate[date]
		resp.Daily = append(resp.Daily, &progressv1.DailyActivity{
			Date: date, Xp: d.XP, Lessons: d.Lessons, Reviews: d.Reviews, Quizzes: d.Quizzes, GoalReached: d.GoalReached,
		})
	}
	first, _ := parseDate(from)
	last, _ := parseDate(today)
	firstWeek, lastWeek := WeekStart(first), WeekStart(last)
	weekly, err := s.store.WeeklyXP(ctx, s.db, id, firstWeek.Format(dateLayout), lastWeek.Format(dateLayout))
	if err != nil {
		return nil, err
	}
	for w := firstWeek; !w.After(lastWeek); w = w.AddDate(0, 0, 7) {
		key := w.Format(dateLayout)
		resp.Weekly = append(resp.Weekly, &progressv1.WeeklyXp{WeekStart: key, Xp: weekly[key]})
	}
	return resp, nil
}

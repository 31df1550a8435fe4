// Package user is the user service: accounts, sign-in with rotating refresh tokens,
// profiles, erasure. It owns the user-events topic.
package user

import (
	"context"
	"embed"
	"runtime"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: its consumer group is "user-service-group", its
// SQLite file user.db, its PostgreSQL schema "user".
const Name = "user"

// PublicMethods need no access token.
var PublicMethods = []string{
	userv1.UserService_Register_FullMethodName,
	userv1.UserService_Login_FullMethodName,
	userv1.UserService_Refresh_FullMethodName,
	userv1.UserService_Logout_FullMethodName,
	userv1.UserService_GetPublicProfile_FullMethodName,
}

//go:embed migrations/*.sql
var migrations embed.FS

// Spec describes the service to the host (platform/service): gRPC :50051, admin
// :8001, no consumed topics yet.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50051, AdminPort: 8001, Migrations: migrations, PublicMethods: PublicMethods,
		Register: func(d service.Deps) error {
			userv1.RegisterUserServiceServer(d.GRPC, New(d.DB, d.Issuer, cfg))
			return nil
		},
	}
}

// Config holds the token lifetimes.
type Config struct {
	AccessTTL  time.Duration // access token lifetime (default 15m)
	RefreshTTL time.Duration // refresh token lifetime (default 30 days)
	// AdminEmails get the admin role when they register (PUCHI_ADMIN_EMAILS): the
	// way to bootstrap the first administrator of an installation.
	AdminEmails []string
}

// Service implements userv1.UserServiceServer. Proto types stop here: handlers
// translate to the domain ([User], [Registration], [Patch]) and back.
// Safe for concurrent use.
type Service struct {
	userv1.UnimplementedUserServiceServer
	db     *db.DB
	store  Store
	issuer *auth.Issuer
	cfg    Config
	now    func() time.Time
	// hashing bounds concurrent argon2id computations (19 MiB and tens of
	// milliseconds each) to the CPU count, so a burst of sign-ins queues instead
	// of exhausting memory.
	hashing  chan struct{}
	hashWait time.Duration
}

// defaultHashWait is how long a sign-in waits for a hashing slot before it is
// refused with ResourceExhausted (HTTP 429).
const defaultHashWait = 3 * time.Second

// withHashSlot runs fn while holding a hashing slot.
func (s *Service) withHashSlot(ctx context.Context, fn func()) error {
	t := time.NewTimer(s.hashWait)
	defer t.Stop()
	select {
	case s.hashing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return apperr.New(apperr.KindTooMany, "SIGN_IN_BUSY", "too many sign-ins in progress, retry in a moment")
	}
	defer func() { <-s.hashing }()
	fn()
	return nil
}

// checkPassword reports whether pw matches the stored hash. It holds a hashing
// slot (see [Service.withHashSlot]) while verifying, so every password check,
// at sign-in or confirming a deletion, shares the same bound and fails with
// ResourceExhausted when the slots stay taken.
func (s *Service) checkPassword(ctx context.Context, hash, pw string) (bool, error) {
	var ok bool
	err := s.withHashSlot(ctx, func() { ok = VerifyPassword(hash, pw) })
	return ok, err
}

// New returns the service over an opened, migrated database.
func New(d *db.DB, issuer *auth.Issuer, cfg Config) *Service {
	if cfg.AccessTTL <= 0 {
		cfg.AccessTTL = 15 * time.Minute
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = 30 * 24 * time.Hour
	}
	return &Service{
		db: d, issuer: issuer, cfg: cfg, now: func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
		hashing: make(chan struct{}, runtime.GOMAXPROCS(0)), hashWait: defaultHashWait,
	}
}

// Register creates an account, publishes UserRegistered and signs the user in.
func (s *Service) Register(ctx context.Context, req *userv1.RegisterRequest) (*userv1.RegisterResponse, error) {
	now := s.now()
	var u User
	var err error
	if herr := s.withHashSlot(ctx, func() {
		u, err = NewUser(uuid.Must(uuid.NewV7()).String(), Registration{
			Email: req.GetEmail(), Password: req.GetPassword(), Username: req.GetUsername(), DisplayName: req.GetDisplayName(),
			NativeLanguage: req.GetNativeLanguage(), TargetLanguage: req.GetTargetLanguage(), Timezone: req.GetTimezone(),
			DailyGoalXP: req.GetDailyGoalXp(),
		}, now)
	}); herr != nil {
		return nil, herr
	}
	if err != nil {
		return nil, err
	}
	if s.isAdminEmail(u.Email) {
		u.Role = RoleAdmin
	}
	var refresh string
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		if err := s.store.CreateUser(ctx, tx, u); err != nil {
			return err
		}
		ev, err := registeredEvent(u)
		if err != nil {
			return err
		}
		if err := outbox.Write(ctx, tx, ev); err != nil {
			return err
		}
		refresh, err = s.newRefreshToken(ctx, tx, u.ID, "", now)
		return err
	})
	if err != nil {
		return nil, err
	}
	tokens, err := s.tokenPair(u, refresh)
	if err != nil {
		return nil, err
	}
	return &userv1.RegisterResponse{User: toProto(u), Tokens: tokens}, nil
}

var (
	errBadCredentials = apperr.Unauthenticated("INVALID_CREDENTIALS", "email or password is incorrect")
	// errBadPassword refuses a wrong password confirming an action of a signed-in
	// user: same reason as a failed sign-in, but PermissionDenied (403), not
	// Unauthenticated (401), because the caller's token is valid and a client that
	// refreshes and retries on 401 would otherwise loop.
	errBadPassword = apperr.Forbidden("INVALID_CREDENTIALS", "password is incorrect")
)

// Login exchanges email and password for a new token family.
func (s *Service) Login(ctx context.Context, req *userv1.LoginRequest) (*userv1.LoginResponse, error) {
	u, err := s.store.UserByEmail(ctx, s.db, NormalizeEmail(req.GetEmail()))
	if err != nil && apperr.KindOf(err) != apperr.KindNotFound {
		return nil, err
	}
	hash := u.PasswordHash
	if err != nil {
		hash = dummyHash // an unknown email costs the same as a wrong password
	}
	ok, herr := s.checkPassword(ctx, hash, req.GetPassword())
	if herr != nil {
		return nil, herr
	}
	if err != nil || !ok {
		return nil, errBadCredentials
	}
	var refresh string
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		refresh, err = s.newRefreshToken(ctx, tx, u.ID, "", s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	tokens, err := s.tokenPair(u, refresh)
	if err != nil {
		return nil, err
	}
	return &userv1.LoginResponse{Tokens: tokens, User: toProto(u)}, nil
}

// Refresh rotates a refresh token. Presenting a token that was already rotated (or
// revoked) is treated as theft: the whole family is revoked and the caller must
// sign in again.
func (s *Service) Refresh(ctx context.Context, req *userv1.RefreshRequest) (*userv1.RefreshResponse, error) {
	now := s.now()
	var (
		u       User
		refresh string
		denied  error // a refusal that must still commit the revocation
	)
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		t, err := s.store.RefreshTokenByHash(ctx, tx, HashRefreshToken(req.GetRefreshToken()))
		if err != nil {
			return err
		}
		reuse, err := t.CheckUsable(now)
		if err == nil {
			fresh, rerr := s.store.MarkRotated(ctx, tx, t.ID, now)
			if rerr != nil {
				return rerr
			}
			if !fresh { // another request rotated it between our read and write
				reuse, err = true, apperr.Unauthenticated("REFRESH_TOKEN_REUSED", "refresh token was already used; sign in again")
			}
		}
		if err != nil {
			denied = err
			if reuse {
				return s.store.RevokeFamily(ctx, tx, t.FamilyID, now)
			}
			return nil
		}
		if u, err = s.store.UserByID(ctx, tx, t.UserID); err != nil {
			return err
		}
		refresh, err = s.newRefreshToken(ctx, tx, t.UserID, t.FamilyID, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	if denied != nil {
		return nil, denied
	}
	tokens, err := s.tokenPair(u, refresh)
	if err != nil {
		return nil, err
	}
	return &userv1.RefreshResponse{Tokens: tokens}, nil
}

// Logout revokes the refresh token's family. It is idempotent: an unknown or
// already revoked token succeeds too, so a retried logout never fails.
func (s *Service) Logout(ctx context.Context, req *userv1.LogoutRequest) (*userv1.LogoutResponse, error) {
	err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		t, err := s.store.RefreshTokenByHash(ctx, tx, HashRefreshToken(req.GetRefreshToken()))
		if apperr.KindOf(err) == apperr.KindUnauthenticated {
			return nil
		}
		if err != nil {
			return err
		}
		return s.store.RevokeFamily(ctx, tx, t.FamilyID, s.now())
	})
	if err != nil {
		return nil, err
	}
	return &userv1.LogoutResponse{}, nil
}

// GetMe returns the caller's account.
func (s *Service) GetMe(ctx context.Context, _ *userv1.GetMeRequest) (*userv1.GetMeResponse, error) {
	id, err := callerID(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.store.UserByID(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	return &userv1.GetMeResponse{User: toProto(u)}, nil
}

// UpdateMe applies the fields present in the request; UserProfileUpdated is
// published only when something changed.
func (s *Service) UpdateMe(ctx context.Context, req *userv1.UpdateMeRequest) (*userv1.UpdateMeResponse, error) {
	id, err := callerID(ctx)
	if err != nil {
		return nil, err
	}
	p := Patch{
		DisplayName: req.DisplayName, NativeLanguage: req.NativeLanguage, TargetLanguage: req.TargetLanguage,
		Timezone: req.Timezone, AvatarMediaID: req.AvatarMediaId, DailyGoalXP: req.DailyGoalXp,
	}
	var u User
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		var err error
		if u, err = s.store.UserByID(ctx, tx, id); err != nil {
			return err
		}
		changed, err := u.Apply(p, s.now())
		if err != nil || len(changed) == 0 {
			return err
		}
		if err := s.store.UpdateProfile(ctx, tx, u); err != nil {
			return err
		}
		ev, err := profileUpdatedEvent(u, changed)
		if err != nil {
			return err
		}
		return outbox.Write(ctx, tx, ev)
	})
	if err != nil {
		return nil, err
	}
	return &userv1.UpdateMeResponse{User: toProto(u)}, nil
}

// DeleteMe erases the caller's account and tokens and publishes UserDeleted, on
// which every other service erases that user's data. The request's password is
// verified first, as at [Service.Login] (same hashing slots): a wrong one is
// refused with PermissionDenied INVALID_CREDENTIALS before anything is written.
// The hash is checked outside the transaction, so that no database lock is held
// while argon2id runs.
func (s *Service) DeleteMe(ctx context.Context, req *userv1.DeleteMeRequest) (*userv1.DeleteMeResponse, error) {
	id, err := callerID(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.store.UserByID(ctx, s.db, id)
	if err != nil {
		return nil, err
	}
	ok, err := s.checkPassword(ctx, u.PasswordHash, req.GetPassword())
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBadPassword
	}
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		if err := s.store.DeleteUser(ctx, tx, id); err != nil {
			return err
		}
		ev, err := deletedEvent(id, s.now())
		if err != nil {
			return err
		}
		return outbox.Write(ctx, tx, ev)
	})
	if err != nil {
		return nil, err
	}
	return &userv1.DeleteMeResponse{}, nil
}

// GetPublicProfile returns what anyone may see of a user.
func (s *Service) GetPublicProfile(ctx context.Context, req *userv1.GetPublicProfileRequest) (*userv1.GetPublicProfileResponse, error) {
	u, err := s.store.UserByUsername(ctx, s.db, req.GetUsername())
	if err != nil {
		return nil, err
	}
	return &userv1.GetPublicProfileResponse{Profile: &userv1.PublicProfile{
		Username: u.Username, DisplayName: u.DisplayName, AvatarMediaId: u.AvatarMediaID,
		TargetLanguage: u.TargetLanguage, CreatedAt: timestamppb.New(u.CreatedAt),
	}}, nil
}

// BatchGetDisplayNames serves other services (leaderboards, notifications). Ids
// that do not exist are left out of the map.
func (s *Service) BatchGetDisplayNames(ctx context.Context, req *userv1.BatchGetDisplayNamesRequest) (*userv1.BatchGetDisplayNamesResponse, error) {
	names, err := s.store.DisplayNames(ctx, s.db, req.GetUserIds())
	if err != nil {
		return nil, err
	}
	return &userv1.BatchGetDisplayNamesResponse{DisplayNames: names}, nil
}

func (s *Service) newRefreshToken(ctx context.Context, tx *db.Tx, userID, family string, now time.Time) (string, error) {
	token, hash, err := NewRefreshToken()
	if err != nil {
		return "", err
	}
	id := uuid.Must(uuid.NewV7()).String()
	if family == "" {
		family = id
	}
	err = s.store.InsertRefreshToken(ctx, tx, RefreshToken{
		ID: id, FamilyID: family, UserID: userID, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL),
	})
	return token, err
}

func (s *Service) tokenPair(u User, refresh string) (*userv1.TokenPair, error) {
	access, _, err := s.issuer.Issue(u.ID, string(u.Role), s.cfg.AccessTTL)
	if err != nil {
		return nil, err
	}
	return &userv1.TokenPair{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresInSeconds: int32(s.cfg.AccessTTL / time.Second), RefreshExpiresInSeconds: int32(s.cfg.RefreshTTL / time.Second),
	}, nil
}

func (s *Service) isAdminEmail(email string) bool {
	for _, a := range s.cfg.AdminEmails {
		if NormalizeEmail(a) == email {
			return true
		}
	}
	return false
}

func callerID(ctx context.Context) (string, error) {
	c, ok := auth.FromContext(ctx)
	if !ok || c.UserID == "" {
		return "", apperr.Unauthenticated("TOKEN_MISSING", "sign in first")
	}
	return c.UserID, nil
}

func toProto(u User) *userv1.User {
	return &userv1.User{
		Id: u.ID, Email: u.Email, Username: u.Username, DisplayName: u.DisplayName,
		NativeLanguage: u.NativeLanguage, TargetLanguage: u.TargetLanguage, Timezone: u.Timezone,
		DailyGoalXp: u.DailyGoalXP, AvatarMediaId: u.AvatarMediaID, Role: roleToProto(u.Role),
		CreatedAt: timestamppb.New(u.CreatedAt), UpdatedAt: timestamppb.New(u.UpdatedAt),
	}
}

func roleToProto(r Role) userv1.Role {
	switch r {
	case RoleTeacher:
		return userv1.Role_ROLE_TEACHER
	case RoleAdmin:
		return userv1.Role_ROLE_ADMIN
	case RoleLearner:
		return userv1.Role_ROLE_LEARNER
	}
	return userv1.Role_ROLE_UNSPECIFIED
}

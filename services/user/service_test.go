package user

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

// newTestService returns the service on d and a verifier for the tokens it issues.
func newTestService(t *testing.T, d *db.DB) (*Service, *auth.Verifier) {
	t.Helper()
	iss, ver := servicetest.Auth(t)
	return New(d, iss, Config{}), ver
}

func register(t *testing.T, s *Service, email, username string) *userv1.RegisterResponse {
	t.Helper()
	resp, err := s.Register(context.Background(), &userv1.RegisterRequest{
		Email: email, Password: "long enough pw", DisplayName: "Lan", Username: username,
		NativeLanguage: "vi", TargetLanguage: "en", Timezone: "Asia/Ho_Chi_Minh",
	})
	if err != nil {
		t.Fatalf("register %s: %v", email, err)
	}
	return resp
}

// as returns a context carrying the identity in access token tok.
func as(t *testing.T, v *auth.Verifier, tok string) context.Context {
	t.Helper()
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return auth.WithClaims(context.Background(), c)
}

var outboxRows = servicetest.OutboxRows

func reasonOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Reason
	}
	return ""
}

// TestAccountLifecycle is the storage contract suite of the user service: it runs
// on SQLite and, with PUCHI_TEST_POSTGRES_URL, on PostgreSQL.
func TestAccountLifecycle(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s, ver := newTestService(t, d)
		reg := register(t, s, "Lan@Example.com", "lan")
		uid := reg.GetUser().GetId()

		// Duplicate email (any case) and duplicate username are conflicts naming the field.
		_, err := s.Register(ctx, &userv1.RegisterRequest{Email: "lan@EXAMPLE.com", Password: "long enough pw",
			DisplayName: "X", Username: "other", NativeLanguage: "vi", TargetLanguage: "en"})
		if reasonOf(err) != "EMAIL_TAKEN" {
			t.Fatalf("duplicate email: %v", err)
		}
		_, err = s.Register(ctx, &userv1.RegisterRequest{Email: "other@example.com", Password: "long enough pw",
			DisplayName: "X", Username: "lan", NativeLanguage: "vi", TargetLanguage: "en"})
		if reasonOf(err) != "USERNAME_TAKEN" {
			t.Fatalf("duplicate username: %v", err)
		}

		// Login: wrong password and unknown email look the same.
		for _, c := range []struct{ email, pw string }{{"lan@example.com", "wrong password"}, {"nobody@example.com", "long enough pw"}} {
			if _, err := s.Login(ctx, &userv1.LoginRequest{Email: c.email, Password: c.pw}); reasonOf(err) != "INVALID_CREDENTIALS" {
				t.Fatalf("login %v: %v", c, err)
			}
		}
		login, err := s.Login(ctx, &userv1.LoginRequest{Email: " LAN@example.com", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}

		// The access token identifies the user; GetMe returns them.
		me, err := s.GetMe(as(t, ver, login.GetTokens().GetAccessToken()), &userv1.GetMeRequest{})
		if err != nil || me.GetUser().GetId() != uid || me.GetUser().GetEmail() != "lan@example.com" {
			t.Fatalf("GetMe: %v %v", me, err)
		}
		if _, err := s.GetMe(ctx, &userv1.GetMeRequest{}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("GetMe without claims: %v", err)
		}

		// Update: only changes publish an event.
		name := "Lan Nguyen"
		upd, err := s.UpdateMe(as(t, ver, login.GetTokens().GetAccessToken()), &userv1.UpdateMeRequest{DisplayName: &name})
		if err != nil || upd.GetUser().GetDisplayName() != name {
			t.Fatalf("UpdateMe: %v %v", upd, err)
		}
		if _, err := s.UpdateMe(as(t, ver, login.GetTokens().GetAccessToken()), &userv1.UpdateMeRequest{DisplayName: &name}); err != nil {
			t.Fatal(err)
		}
		names, err := s.BatchGetDisplayNames(ctx, &userv1.BatchGetDisplayNamesRequest{UserIds: []string{uid, "0190c8a0-0000-7000-8000-000000000000"}})
		if err != nil || len(names.GetDisplayNames()) != 1 || names.GetDisplayNames()[uid] != name {
			t.Fatalf("BatchGetDisplayNames: %v %v", names, err)
		}
		prof, err := s.GetPublicProfile(ctx, &userv1.GetPublicProfileRequest{Username: "LAN"})
		if err != nil || prof.GetProfile().GetDisplayName() != name {
			t.Fatalf("GetPublicProfile: %v %v", prof, err)
		}

		// Delete: the account is gone, its tokens with it.
		if _, err := s.DeleteMe(as(t, ver, login.GetTokens().GetAccessToken()), &userv1.DeleteMeRequest{Password: "long enough pw"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Login(ctx, &userv1.LoginRequest{Email: "lan@example.com", Password: "long enough pw"}); reasonOf(err) != "INVALID_CREDENTIALS" {
			t.Fatalf("login after delete: %v", err)
		}
		if _, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: login.GetTokens().GetRefreshToken()}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("refresh after delete: %v", err)
		}
		if _, err := s.DeleteMe(as(t, ver, login.GetTokens().GetAccessToken()), &userv1.DeleteMeRequest{Password: "long enough pw"}); apperr.KindOf(err) != apperr.KindNotFound {
			t.Fatalf("second delete: %v", err)
		}

		// Exactly one event per change, keyed and subject-ed by the user, in order;
		// the failed registrations and the no-op update wrote nothing.
		rows := outboxRows(t, d)
		servicetest.CheckOutbox(t, rows, kafka.TopicUserEvents, uid,
			"puchi.user.v1.UserRegistered", "puchi.user.v1.UserProfileUpdated", "puchi.user.v1.UserDeleted")
		var ev userv1.UserProfileUpdated
		if err := proto.Unmarshal(rows[1].Value, &ev); err != nil || ev.GetDisplayName() != name || len(ev.GetChangedFields()) != 1 {
			t.Errorf("UserProfileUpdated payload: %v %v", &ev, err)
		}
	})
}

// startServer serves s behind the platform's interceptors (authentication,
// protovalidate), trusting ver's tokens, and returns a client.
func startServer(t *testing.T, s *Service, ver *auth.Verifier) userv1.UserServiceClient {
	t.Helper()
	conn := servicetest.Serve(t, grpcx.ServerConfig{Name: Name, Verifier: ver, PublicMethods: PublicMethods},
		func(r grpc.ServiceRegistrar) { userv1.RegisterUserServiceServer(r, s) })
	return userv1.NewUserServiceClient(conn)
}

// statusReason returns the ErrorInfo reason of a gRPC error.
func statusReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// badFields returns the fields named by the BadRequest detail of err.
func badFields(err error) []string {
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

// Deleting an account takes the password again: without it the request is
// invalid, with a wrong one it is refused; either way the account stays and no
// UserDeleted is written. The right one deletes and publishes.
func TestDeleteMeRequiresThePassword(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s, ver := newTestService(t, d)
		client := startServer(t, s, ver)
		reg := register(t, s, "mai@example.com", "mai")
		uid := reg.GetUser().GetId()
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+reg.GetTokens().GetAccessToken())

		stillThere := func(when string) {
			t.Helper()
			if _, err := client.GetMe(ctx, &userv1.GetMeRequest{}); err != nil {
				t.Fatalf("%s: GetMe: %v", when, err)
			}
			if _, err := client.Login(context.Background(), &userv1.LoginRequest{Email: "mai@example.com", Password: "long enough pw"}); err != nil {
				t.Fatalf("%s: login: %v", when, err)
			}
			servicetest.CheckOutbox(t, outboxRows(t, d), kafka.TopicUserEvents, uid, "puchi.user.v1.UserRegistered")
		}

		_, err := client.DeleteMe(ctx, &userv1.DeleteMeRequest{})
		if status.Code(err) != codes.InvalidArgument || len(badFields(err)) != 1 || badFields(err)[0] != "password" {
			t.Fatalf("no password: %v (fields %v), want InvalidArgument naming password", err, badFields(err))
		}
		stillThere("no password")

		for _, pw := range []string{"wrong password", "LONG ENOUGH PW", "long enough pw "} {
			_, err = client.DeleteMe(ctx, &userv1.DeleteMeRequest{Password: pw})
			if status.Code(err) != codes.PermissionDenied || statusReason(err) != "INVALID_CREDENTIALS" {
				t.Fatalf("password %q: %v, want PermissionDenied INVALID_CREDENTIALS", pw, err)
			}
		}
		stillThere("wrong password")

		// Password checks share the sign-in hashing slots: saturated, a deletion
		// is refused with ResourceExhausted and deletes nothing.
		s.hashWait = 20 * time.Millisecond
		for range cap(s.hashing) {
			s.hashing <- struct{}{}
		}
		_, err = s.DeleteMe(as(t, ver, reg.GetTokens().GetAccessToken()), &userv1.DeleteMeRequest{Password: "long enough pw"})
		for range cap(s.hashing) {
			<-s.hashing
		}
		if apperr.KindOf(err) != apperr.KindTooMany {
			t.Fatalf("saturated delete: %v, want TooMany", err)
		}
		stillThere("hashing saturated")

		if _, err := client.DeleteMe(ctx, &userv1.DeleteMeRequest{Password: "long enough pw"}); err != nil {
			t.Fatalf("right password: %v", err)
		}
		if _, err := client.Login(context.Background(), &userv1.LoginRequest{Email: "mai@example.com", Password: "long enough pw"}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("login after delete: %v", err)
		}
		servicetest.CheckOutbox(t, outboxRows(t, d), kafka.TopicUserEvents, uid,
			"puchi.user.v1.UserRegistered", "puchi.user.v1.UserDeleted")
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		s, _ := newTestService(t, d)
		first := register(t, s, "chi@example.com", "chi").GetTokens().GetRefreshToken()

		second, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: first})
		if err != nil {
			t.Fatal(err)
		}
		r2 := second.GetTokens().GetRefreshToken()
		if r2 == first || second.GetTokens().GetAccessToken() == "" {
			t.Fatal("refresh did not rotate")
		}
		// Reusing the rotated token revokes the family: the newer token dies too.
		if _, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: first}); reasonOf(err) != "REFRESH_TOKEN_REUSED" {
			t.Fatalf("reuse: %v", err)
		}
		if _, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: r2}); reasonOf(err) != "REFRESH_TOKEN_REUSED" {
			t.Fatalf("sibling after reuse: %v", err)
		}
		if _, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: "not-a-token"}); reasonOf(err) != "REFRESH_TOKEN_INVALID" {
			t.Fatalf("garbage: %v", err)
		}

		// Logout revokes; it is idempotent and accepts unknown tokens.
		login, err := s.Login(ctx, &userv1.LoginRequest{Email: "chi@example.com", Password: "long enough pw"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := s.Logout(ctx, &userv1.LogoutRequest{RefreshToken: login.GetTokens().GetRefreshToken()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Logout(ctx, &userv1.LogoutRequest{RefreshToken: "unknown"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Refresh(ctx, &userv1.RefreshRequest{RefreshToken: login.GetTokens().GetRefreshToken()}); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("refresh after logout: %v", err)
		}
	})
}

// Two concurrent refreshes of one token: exactly one wins.
func TestConcurrentRefreshOneWinner(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		s, _ := newTestService(t, d)
		tok := register(t, s, "an@example.com", "an").GetTokens().GetRefreshToken()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 4 {
			wg.Go(func() {
				if _, err := s.Refresh(context.Background(), &userv1.RefreshRequest{RefreshToken: tok}); err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if apperr.KindOf(err) != apperr.KindUnauthenticated {
					t.Errorf("unexpected error: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d concurrent refreshes succeeded, want 1", wins)
		}
	})
}

// A burst of sign-ins beyond the hashing slots is refused with ResourceExhausted
// instead of piling up argon2id computations.
func TestSignInBurstIsRefusedWhenHashingIsSaturated(t *testing.T) {
	s, _ := newTestService(t, dbtest.Open(t, "sqlite", migrations))
	register(t, s, "busy@example.com", "busy")
	s.hashWait = 20 * time.Millisecond
	for range cap(s.hashing) {
		s.hashing <- struct{}{} // every slot taken
	}
	_, err := s.Login(context.Background(), &userv1.LoginRequest{Email: "busy@example.com", Password: "long enough pw"})
	if apperr.KindOf(err) != apperr.KindTooMany {
		t.Fatalf("saturated login: %v, want TooMany", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Register(ctx, &userv1.RegisterRequest{Email: "x@example.com", Password: "long enough pw", DisplayName: "X",
		Username: "xx_1", NativeLanguage: "vi", TargetLanguage: "en"}); err == nil {
		t.Fatal("register with a cancelled context and no slot succeeded")
	}
	for range cap(s.hashing) {
		<-s.hashing
	}
	if _, err := s.Login(context.Background(), &userv1.LoginRequest{Email: "busy@example.com", Password: "long enough pw"}); err != nil {
		t.Fatalf("login after slots freed: %v", err)
	}
}

func TestAdminEmailsRegisterAsAdmins(t *testing.T) {
	s, ver := newTestService(t, dbtest.Open(t, "sqlite", migrations))
	s.cfg.AdminEmails = []string{" Boss@Example.com "}
	admin := register(t, s, "boss@example.com", "boss")
	learner := register(t, s, "lan@example.com", "lan")
	if admin.GetUser().GetRole() != userv1.Role_ROLE_ADMIN || learner.GetUser().GetRole() != userv1.Role_ROLE_LEARNER {
		t.Fatalf("roles: admin=%v learner=%v", admin.GetUser().GetRole(), learner.GetUser().GetRole())
	}
	c, err := ver.Verify(admin.GetTokens().GetAccessToken())
	if err != nil || c.Role != auth.RoleAdmin {
		t.Fatalf("admin token role %q (%v)", c.Role, err)
	}
}

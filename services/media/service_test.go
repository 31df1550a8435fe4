package media

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

type harness struct {
	s      *Service
	d      *db.DB
	dir    string // the blob store root
	clock  *servicetest.Clock
	router *kafka.Router
}

func newHarness(t *testing.T, d *db.DB, cfg Config) *harness {
	t.Helper()
	clock := servicetest.NewClock(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	cfg.Now, cfg.Dir = clock.Now, dir
	if cfg.Blobs != nil {
		cfg.TempDir = filepath.Join(dir, "tmp") // spooled uploads, where blobs() sees them
	}
	spec := Spec(cfg)
	if spec.Name != Name || spec.GRPCPort != 50055 || spec.AdminPort != 8004 || len(spec.Topics) != 1 || len(spec.PublicMethods) != 2 {
		t.Fatalf("spec: %+v", spec)
	}
	s, err := New(d, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{s: s, d: d, dir: dir, clock: clock, router: kafka.NewRouter()}
	s.registerHandlers(service.Deps{DB: d, Router: h.router, Group: "media-service-group"})
	return h
}

func as(userID string) context.Context { return servicetest.As(userID, auth.RoleLearner) }

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// uploadStream feeds an Upload call: the metadata, then data in chunks.
type uploadStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*mediav1.UploadRequest
	resp *mediav1.UploadResponse
}

func (u *uploadStream) Context() context.Context { return u.ctx }

func (u *uploadStream) Recv() (*mediav1.UploadRequest, error) {
	if len(u.msgs) == 0 {
		return nil, io.EOF
	}
	m := u.msgs[0]
	u.msgs = u.msgs[1:]
	return m, nil
}

func (u *uploadStream) SendAndClose(r *mediav1.UploadResponse) error { u.resp = r; return nil }

func uploadMsgs(md *mediav1.UploadMetadata, data []byte, chunk int) []*mediav1.UploadRequest {
	msgs := []*mediav1.UploadRequest{{Payload: &mediav1.UploadRequest_Metadata{Metadata: md}}}
	for len(data) > 0 {
		n := min(chunk, len(data))
		msgs = append(msgs, &mediav1.UploadRequest{Payload: &mediav1.UploadRequest_Chunk{Chunk: data[:n]}})
		data = data[n:]
	}
	return msgs
}

func (h *harness) upload(ctx context.Context, md *mediav1.UploadMetadata, data []byte) (*mediav1.Media, error) {
	st := &uploadStream{ctx: ctx, msgs: uploadMsgs(md, data, 1000)}
	if err := h.s.Upload(st); err != nil {
		return nil, err
	}
	return st.resp.GetMedia(), nil
}

func (h *harness) mustUpload(t *testing.T, ctx context.Context, md *mediav1.UploadMetadata, data []byte) *mediav1.Media {
	t.Helper()
	m, err := h.upload(ctx, md, data)
	if err != nil {
		t.Fatalf("upload %s: %v", md.GetFilename(), err)
	}
	return m
}

// readStream collects a ReadContent call.
type readStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*mediav1.ReadContentResponse
}

func (r *readStream) Context() context.Context { return r.ctx }

func (r *readStream) Send(m *mediav1.ReadContentResponse) error {
	r.msgs = append(r.msgs, proto.Clone(m).(*mediav1.ReadContentResponse))
	return nil
}

func (h *harness) read(ctx context.Context, req *mediav1.ReadContentRequest) (*mediav1.ReadContentResponse, []byte, error) {
	st := &readStream{ctx: ctx}
	if err := h.s.ReadContent(req, st); err != nil {
		return nil, nil, err
	}
	var data []byte
	for i, m := range st.msgs {
		if len(m.GetData()) > chunkSize || (i > 0 && m.GetContentType() != "") {
			return nil, nil, io.ErrUnexpectedEOF
		}
		data = append(data, m.GetData()...)
	}
	return st.msgs[0], data, nil
}

func avatar(name string) *mediav1.UploadMetadata {
	return &mediav1.UploadMetadata{Filename: name, Purpose: mediav1.MediaPurpose_MEDIA_PURPOSE_AVATAR}
}

func other(name string) *mediav1.UploadMetadata {
	return &mediav1.UploadMetadata{Filename: name, Purpose: mediav1.MediaPurpose_MEDIA_PURPOSE_OTHER}
}

// blobs lists the files of the blob store (its tmp directory included), or
// the objects of an [S3Store] and the spooled uploads.
func (h *harness) blobs(t *testing.T) (blobs, temps []string) {
	t.Helper()
	if s3, ok := h.s.blobs.(*S3Store); ok {
		for obj := range s3.client.ListObjects(context.Background(), s3.bucket, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err != nil {
				t.Fatal(obj.Err)
			}
			blobs = append(blobs, obj.Key)
		}
	}
	err := filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(h.dir, p)
		if filepath.Dir(rel) == "tmp" {
			temps = append(temps, rel)
		} else {
			blobs = append(blobs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blobs, temps
}

// forEachStore runs a service test on each database (servicetest.ForEachDB)
// with each blob store: the default local store, and an [S3Store] over an
// in-process S3 server (gofakes3).
func forEachStore(t *testing.T, fn func(t *testing.T, d *db.DB, cfg Config)) {
	t.Helper()
	t.Run("local", func(t *testing.T) {
		servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) { fn(t, d, Config{}) })
	})
	t.Run("s3", func(t *testing.T) {
		servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) { fn(t, d, Config{Blobs: newTestS3Store(t)}) })
	})
}

func reasonOf(err error) string {
	if e, ok := apperr.As(err); ok {
		return e.Reason
	}
	return ""
}

var count = servicetest.Count

const (
	typeUploaded  = "puchi.media.v1.MediaUploaded"
	typeProcessed = "puchi.media.v1.MediaProcessed"
	typeDeleted   = "puchi.media.v1.MediaDeleted"
)

// TestUploadDedupeVisibilityDelete is the storage contract suite of the media
// service: SQLite and, with PUCHI_TEST_POSTGRES_URL, PostgreSQL; the local and
// the S3 blob store.
func TestUploadDedupeVisibilityDelete(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *db.DB, cfg Config) {
		h := newHarness(t, d, cfg)
		lan, chi := newID(), newID()
		img := pngBytes(t, 600, 300)

		m1 := h.mustUpload(t, as(lan), avatar("me.png"), img)
		if m1.GetContentType() != TypePNG || m1.GetSizeBytes() != int64(len(img)) || m1.GetWidth() != 600 || m1.GetHeight() != 300 ||
			!m1.GetHasThumbnail() || m1.GetVisibility() != mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC || m1.GetOwnerId() != lan ||
			m1.GetProcessedAt() == nil || len(m1.GetSha256()) != 64 || m1.GetFilename() != "me.png" {
			t.Fatalf("uploaded %v", m1)
		}
		// The same bytes again (another name, another user, private): a new item
		// sharing the one blob.
		h.clock.Advance(time.Second)
		m2 := h.mustUpload(t, as(chi), other("copy.png"), img)
		if m2.GetId() == m1.GetId() || m2.GetSha256() != m1.GetSha256() || m2.GetVisibility() != mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE {
			t.Fatalf("second upload %v", m2)
		}
		if blobs, temps := h.blobs(t); len(blobs) != 2 || len(temps) != 0 { // content + thumbnail
			t.Fatalf("blobs %v temps %v, want the content and its thumbnail once", blobs, temps)
		}

		// Content comes back byte-identical, in ≤ 64 KiB chunks, with its header;
		// ranges and thumbnails too.
		head, data, err := h.read(as(lan), &mediav1.ReadContentRequest{MediaId: m1.GetId()})
		if err != nil || !bytes.Equal(data, img) || head.GetContentType() != TypePNG || head.GetSha256() != m1.GetSha256() ||
			head.GetSizeBytes() != int64(len(img)) || head.GetLength() != int64(len(img)) {
			t.Fatalf("read: %v %v", head, err)
		}
		head, data, err = h.read(context.Background(), &mediav1.ReadContentRequest{MediaId: m1.GetId(), Offset: 10, Length: 20})
		if err != nil || !bytes.Equal(data, img[10:30]) || head.GetOffset() != 10 || head.GetLength() != 20 {
			t.Fatalf("anonymous range read of a public item: %v %v", head, err)
		}
		_, _, err = h.read(as(lan), &mediav1.ReadContentRequest{MediaId: m1.GetId(), Offset: int64(len(img))})
		if status.Code(err) != codes.OutOfRange {
			t.Fatalf("offset at end: %v", err)
		}
		head, data, err = h.read(as(lan), &mediav1.ReadContentRequest{MediaId: m1.GetId(), Thumbnail: true})
		if err != nil || head.GetContentType() != TypePNG || head.GetSizeBytes() != int64(len(data)) {
			t.Fatalf("thumbnail: %v %v", head, err)
		}
		if w, hh, err := ImageConfig(bytes.NewReader(data)); err != nil || w != 256 || hh != 128 {
			t.Fatalf("thumbnail %d×%d %v", w, hh, err)
		}

		// chi's private copy is invisible to lan and to anonymous callers; admins see it.
		for _, ctx := range []context.Context{as(lan), context.Background()} {
			if _, err := h.s.GetMedia(ctx, &mediav1.GetMediaRequest{MediaId: m2.GetId()}); reasonOf(err) != "MEDIA_NOT_FOUND" {
				t.Fatalf("other's private item: %v", err)
			}
			if _, _, err := h.read(ctx, &mediav1.ReadContentRequest{MediaId: m2.GetId()}); reasonOf(err) != "MEDIA_NOT_FOUND" {
				t.Fatalf("other's private content: %v", err)
			}
			if _, err := h.s.DeleteMedia(ctx, &mediav1.DeleteMediaRequest{MediaId: m2.GetId()}); apperr.KindOf(err) == apperr.KindInternal || err == nil {
				t.Fatalf("delete other's private item: %v", err)
			}
		}
		if _, err := h.s.GetMedia(servicetest.As(newID(), auth.RoleAdmin), &mediav1.GetMediaRequest{MediaId: m2.GetId()}); err != nil {
			t.Fatalf("admin read: %v", err)
		}
		if _, err := h.s.GetMedia(as(chi), &mediav1.GetMediaRequest{MediaId: m2.GetId()}); err != nil {
			t.Fatalf("owner read: %v", err)
		}
		if _, err := h.s.GetMedia(as(lan), &mediav1.GetMediaRequest{MediaId: newID()}); reasonOf(err) != "MEDIA_NOT_FOUND" {
			t.Fatalf("unknown id: %v", err)
		}
		// A public item of someone else may be read but not deleted.
		if _, err := h.s.DeleteMedia(as(chi), &mediav1.DeleteMediaRequest{MediaId: m1.GetId()}); apperr.KindOf(err) != apperr.KindForbidden {
			t.Fatalf("delete other's public item: %v", err)
		}

		// Deleting one item keeps the blob the other still uses; deleting the
		// last one removes it.
		if _, err := h.s.DeleteMedia(as(lan), &mediav1.DeleteMediaRequest{MediaId: m1.GetId()}); err != nil {
			t.Fatal(err)
		}
		if blobs, _ := h.blobs(t); len(blobs) != 2 {
			t.Fatalf("shared blob deleted: %v", blobs)
		}
		if _, _, err := h.read(as(chi), &mediav1.ReadContentRequest{MediaId: m2.GetId()}); err != nil {
			t.Fatalf("read shared blob after the other item's deletion: %v", err)
		}
		if _, err := h.s.DeleteMedia(servicetest.As(newID(), auth.RoleAdmin), &mediav1.DeleteMediaRequest{MediaId: m2.GetId()}); err != nil {
			t.Fatal(err)
		}
		if blobs, _ := h.blobs(t); len(blobs) != 0 {
			t.Fatalf("unreferenced blobs left: %v", blobs)
		}
		if _, err := h.s.DeleteMedia(as(lan), &mediav1.DeleteMediaRequest{MediaId: m1.GetId()}); reasonOf(err) != "MEDIA_NOT_FOUND" {
			t.Fatalf("second delete: %v", err)
		}

		rows := servicetest.OutboxRows(t, d)
		servicetest.CheckOutbox(t, rows[:2], kafka.TopicMediaEvents, lan, typeUploaded, typeProcessed)
		servicetest.CheckOutbox(t, rows[2:4], kafka.TopicMediaEvents, chi, typeUploaded, typeProcessed)
		servicetest.CheckOutbox(t, rows[4:5], kafka.TopicMediaEvents, lan, typeDeleted)
		servicetest.CheckOutbox(t, rows[5:], kafka.TopicMediaEvents, chi, typeDeleted)
		var ev mediav1.MediaDeleted
		if err := proto.Unmarshal(rows[5].Value, &ev); err != nil || ev.GetReason() != mediav1.MediaDeletionReason_MEDIA_DELETION_REASON_ADMIN || ev.GetMediaId() != m2.GetId() {
			t.Fatalf("MediaDeleted by an admin: %v %v", &ev, err)
		}
	})
}

func TestRefusedUploadsStoreNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *db.DB, cfg Config) {
		cfg.MaxUploadBytes = 64 << 10
		h := newHarness(t, d, cfg)
		uid := newID()
		big := append(pngBytes(t, 4, 4), make([]byte, 64<<10)...)
		if _, err := h.upload(as(uid), avatar("big.png"), big); reasonOf(err) != "MEDIA_TOO_LARGE" || apperr.KindOf(err) != apperr.KindTooMany {
			t.Fatalf("too large: %v", err)
		}
		script := []byte("#!/bin/sh\necho pwned\n")
		if _, err := h.upload(as(uid), avatar("x.png"), script); reasonOf(err) != "UNSUPPORTED_MEDIA_TYPE" || apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("script named x.png: %v", err)
		}
		// A PNG signature followed by garbage is refused too.
		fake := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("x"), 100)...)
		if _, err := h.upload(as(uid), avatar("fake.png"), fake); reasonOf(err) != "UNSUPPORTED_MEDIA_TYPE" {
			t.Fatalf("png magic then garbage: %v", err)
		}
		if _, err := h.upload(as(uid), avatar("song.mp3"), mp3Bytes()); reasonOf(err) != "MEDIA_PURPOSE_MISMATCH" {
			t.Fatalf("mp3 avatar: %v", err)
		}
		if _, err := h.upload(as(uid), &mediav1.UploadMetadata{Filename: "a.wav", Purpose: mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_AUDIO}, wavBytes(8000, 10)); apperr.KindOf(err) != apperr.KindForbidden {
			t.Fatalf("lesson audio by a learner: %v", err)
		}
		if _, err := h.upload(as(uid), avatar("empty.png"), nil); reasonOf(err) != "MEDIA_EMPTY" {
			t.Fatalf("empty: %v", err)
		}
		if _, err := h.upload(context.Background(), avatar("anon.png"), pngBytes(t, 2, 2)); apperr.KindOf(err) != apperr.KindUnauthenticated {
			t.Fatalf("anonymous upload: %v", err)
		}
		if blobs, temps := h.blobs(t); len(blobs) != 0 || len(temps) != 0 {
			t.Fatalf("refused uploads left blobs %v temps %v", blobs, temps)
		}
		if n := count(t, d, `SELECT count(*) FROM media_items`); n != 0 {
			t.Fatalf("%d rows", n)
		}
		if n := count(t, d, `SELECT count(*) FROM outbox`); n != 0 {
			t.Fatalf("%d events", n)
		}
		// Exactly at the cap is accepted.
		exact := append(wavBytes(8000, 0), make([]byte, 0)...)
		exact = append(exact, make([]byte, (64<<10)-len(exact))...)
		if _, err := h.upload(as(uid), other("exact.wav"), exact); err != nil {
			t.Fatalf("upload at the cap: %v", err)
		}
	})
}

func TestAudioListAndIdempotency(t *testing.T) {
	servicetest.ForEachDB(t, migrations, func(t *testing.T, d *db.DB) {
		h := newHarness(t, d, Config{})
		teacher := newID()
		tctx := servicetest.As(teacher, auth.RoleTeacher)
		wav := h.mustUpload(t, tctx, &mediav1.UploadMetadata{Filename: "a.wav", Purpose: mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_AUDIO}, wavBytes(8000, 2500))
		if wav.GetContentType() != TypeWAV || wav.GetDurationMs() != 2500 || wav.GetHasThumbnail() || wav.GetVisibility() != mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC {
			t.Fatalf("wav %v", wav)
		}
		for i, data := range [][]byte{mp3Bytes(), oggBytes(), jpegBytes(t, 20, 10), webpBytes()} {
			h.clock.Advance(time.Second)
			md := other("f")
			if i == 0 {
				md.Visibility = mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC
			}
			h.mustUpload(t, tctx, md, data)
		}
		// An upload retried with the same key returns the first item.
		h.clock.Advance(time.Second)
		md := other("retry.png")
		md.IdempotencyKey = "k-1"
		first := h.mustUpload(t, tctx, md, pngBytes(t, 5, 5))
		again := h.mustUpload(t, tctx, md, pngBytes(t, 5, 5))
		if again.GetId() != first.GetId() {
			t.Fatalf("retry made a new item: %v vs %v", again, first)
		}

		p1, err := h.s.ListMyMedia(tctx, &mediav1.ListMyMediaRequest{PageSize: 4})
		if err != nil || len(p1.GetMedia()) != 4 || p1.GetNextPageToken() == "" || p1.GetMedia()[0].GetId() != first.GetId() {
			t.Fatalf("page 1: %v %v", p1, err)
		}
		p2, err := h.s.ListMyMedia(tctx, &mediav1.ListMyMediaRequest{PageSize: 4, PageToken: p1.GetNextPageToken()})
		if err != nil || len(p2.GetMedia()) != 2 || p2.GetNextPageToken() != "" || p2.GetMedia()[1].GetId() != wav.GetId() {
			t.Fatalf("page 2: %v %v", p2, err)
		}
		audio, err := h.s.ListMyMedia(tctx, &mediav1.ListMyMediaRequest{Purpose: mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_AUDIO})
		if err != nil || len(audio.GetMedia()) != 1 {
			t.Fatalf("by purpose: %v %v", audio, err)
		}
		if _, err := h.s.ListMyMedia(tctx, &mediav1.ListMyMediaRequest{PageToken: "garbage"}); apperr.KindOf(err) != apperr.KindInvalid {
			t.Fatalf("bad token: %v", err)
		}
		if n := len(servicetest.OfType(servicetest.OutboxRows(t, d), typeProcessed)); n != 6 {
			t.Fatalf("%d MediaProcessed, want 6", n)
		}
		var ev mediav1.MediaProcessed
		if err := proto.Unmarshal(servicetest.OfType(servicetest.OutboxRows(t, d), typeProcessed)[0].Value, &ev); err != nil || ev.GetDurationMs() != 2500 {
			t.Fatalf("MediaProcessed %v %v", &ev, err)
		}
	})
}

func TestUserDeletedErasesPrivateItems(t *testing.T) {
	forEachStore(t, func(t *testing.T, d *db.DB, cfg Config) {
		h := newHarness(t, d, cfg)
		lan, chi := newID(), newID()
		// Larger than a thumbnail, so that every thumbnail differs from its image.
		shared := pngBytes(t, 400, 20)
		pub := h.mustUpload(t, as(lan), avatar("me.png"), pngBytes(t, 300, 10))
		priv := h.mustUpload(t, as(lan), other("secret.png"), shared)
		solo := h.mustUpload(t, as(lan), other("notes.ogg"), oggBytes())
		chis := h.mustUpload(t, as(chi), other("same.png"), shared)

		msg := servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicUserEvents, Key: lan, Source: "user", Subject: lan,
			Payload: &userv1.UserDeleted{UserId: lan, DeletedAt: timestamppb.Now()}})
		servicetest.Deliver(t, h.router, msg, 2) // a redelivery has no second effect
		h.s.sweep(context.Background())

		for _, id := range []string{priv.GetId(), solo.GetId()} {
			if _, err := h.s.GetMedia(as(lan), &mediav1.GetMediaRequest{MediaId: id}); reasonOf(err) != "MEDIA_NOT_FOUND" {
				t.Fatalf("private item %s survived: %v", id, err)
			}
		}
		if _, err := h.s.GetMedia(context.Background(), &mediav1.GetMediaRequest{MediaId: pub.GetId()}); err != nil {
			t.Fatalf("public avatar erased: %v", err)
		}
		if _, data, err := h.read(as(chi), &mediav1.ReadContentRequest{MediaId: chis.GetId()}); err != nil || !bytes.Equal(data, shared) {
			t.Fatalf("chi's copy of shared bytes: %v", err)
		}
		// Left: the avatar (+thumbnail) and the shared image (+thumbnail); the ogg is gone.
		if blobs, _ := h.blobs(t); len(blobs) != 4 {
			t.Fatalf("blobs %v", blobs)
		}
		if n := count(t, d, `SELECT count(*) FROM media_blob_gc`); n != 0 {
			t.Fatalf("%d gc marks left", n)
		}
		deleted := servicetest.OfType(servicetest.OutboxRows(t, d), typeDeleted)
		servicetest.CheckOutbox(t, deleted, kafka.TopicMediaEvents, lan, typeDeleted, typeDeleted)
		var ev mediav1.MediaDeleted
		if err := proto.Unmarshal(deleted[0].Value, &ev); err != nil || ev.GetReason() != mediav1.MediaDeletionReason_MEDIA_DELETION_REASON_USER_DELETED {
			t.Fatalf("MediaDeleted %v %v", &ev, err)
		}
		bad := servicetest.Event(t, kafka.EventSpec{Topic: kafka.TopicUserEvents, Key: "x", Source: "user", Payload: &userv1.UserDeleted{}})
		if err := h.router.Handle(context.Background(), &bad); !kafka.IsPermanent(err) {
			t.Fatalf("bad event: %v", err)
		}
	})
}

func TestLocalStore(t *testing.T) {
	ls, err := NewLocalStore(filepath.Join(t.TempDir(), "media"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "ab" + string(bytes.Repeat([]byte("0"), 62))
	if err := ls.Put(ctx, key, bytes.NewReader([]byte("hello world")), 11); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ls.Root, "ab", key)); err != nil {
		t.Fatalf("layout: %v", err)
	}
	rc, err := ls.Open(ctx, key, 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if string(b) != "wor" {
		t.Fatalf("range read %q", b)
	}
	if ok, err := ls.Exists(ctx, key); !ok || err != nil {
		t.Fatal("exists")
	}
	if err := ls.Put(ctx, key, bytes.NewReader([]byte("short")), 11); err == nil {
		t.Fatal("short put accepted")
	}
	if err := ls.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := ls.Delete(ctx, key); err != nil {
		t.Fatal("second delete", err)
	}
	if _, err := ls.Open(ctx, key, 0, 0); !os.IsNotExist(err) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := ls.Open(ctx, "../../etc/passwd", 0, 0); err == nil {
		t.Fatal("path traversal")
	}
	if entries, _ := os.ReadDir(ls.TempDir()); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

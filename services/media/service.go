// Package media is the media service: uploaded images and audio (avatars,
// lesson audio and images), type sniffed from the bytes, stored once per content
// (sha256) in a [BlobStore], with their metadata and image thumbnails. It owns the
// media-events topic.
package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/page"
	"github.com/puchi-dev/puchi/platform/service"
)

// Name is the service's name: its consumer group is "media-service-group", its
// SQLite file media.db, its PostgreSQL schema "media".
const Name = "media"

// PublicMethods need no access token: a public item may be read by anyone; the
// handlers decide per item (a private one is not found without its owner's
// token).
var PublicMethods = []string{
	mediav1.MediaService_ReadContent_FullMethodName,
	mediav1.MediaService_GetMedia_FullMethodName,
}

//go:embed migrations/*.sql
var migrations embed.FS

// DefaultMaxUploadBytes is the default upload size cap: 10 MiB.
const DefaultMaxUploadBytes = 10 << 20

// chunkSize is the largest chunk ReadContent sends.
const chunkSize = 64 << 10

// Spec describes the service to the host (platform/service): gRPC :50055, admin
// :8004, consuming user-events.
func Spec(cfg Config) service.Spec {
	return service.Spec{
		Name: Name, GRPCPort: 50055, AdminPort: 8004, Migrations: migrations, PublicMethods: PublicMethods, Topics: Topics,
		Register: func(d service.Deps) error {
			s, err := New(d.DB, cfg)
			if err != nil {
				return err
			}
			if d.Log != nil {
				s.log = d.Log
			}
			mediav1.RegisterMediaServiceServer(d.GRPC, s)
			s.registerHandlers(d)
			// Blobs marked by a consumer's transaction are swept once it commits,
			// and at start for what a previous process left.
			d.DB.AfterCommit(s.afterCommit)
			go s.sweep(context.Background())
			return nil
		},
	}
}

// Config configures the service. Zero fields take defaults.
type Config struct {
	// MaxUploadBytes caps an upload (default 10 MiB; PUCHI_MEDIA_MAX_BYTES).
	MaxUploadBytes int64
	// Dir is the local blob store's root, e.g. "<data dir>/media"; used when
	// Blobs is nil.
	Dir string
	// Blobs is where the bytes go; nil means a [LocalStore] at Dir.
	Blobs BlobStore
	// TempDir spools uploads while they stream in; "" means the local store's
	// tmp directory (same file system), else os.TempDir().
	TempDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service implements mediav1.MediaServiceServer. Proto types stop here. Safe for
// concurrent use.
type Service struct {
	mediav1.UnimplementedMediaServiceServer
	db      *db.DB
	store   Store
	blobs   BlobStore
	max     int64
	tempDir string
	now     func() time.Time
	log     *slog.Logger

	// shaLocks serialise, per blob (striped by hash), storing a blob and
	// committing the item that names it against the sweep that deletes an
	// unreferenced blob: a blob is never deleted under an upload that found it
	// present. The lock is always taken before, never inside, a transaction.
	// It is per process: several instances sharing one blob store would need a
	// database lock instead.
	shaLocks  [64]sync.Mutex
	sweepMu   sync.Mutex
	gcPending atomic.Bool
}

// New returns the service over an opened, migrated database.
func New(d *db.DB, cfg Config) (*Service, error) {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Blobs == nil {
		ls, err := NewLocalStore(cfg.Dir)
		if err != nil {
			return nil, err
		}
		cfg.Blobs = ls
	}
	if cfg.TempDir == "" {
		if ls, ok := cfg.Blobs.(*LocalStore); ok {
			cfg.TempDir = ls.TempDir()
		} else {
			cfg.TempDir = os.TempDir()
		}
	}
	if err := os.MkdirAll(cfg.TempDir, 0o750); err != nil {
		return nil, fmt.Errorf("media: temp dir: %w", err)
	}
	clock := cfg.Now
	return &Service{
		db: d, blobs: cfg.Blobs, max: cfg.MaxUploadBytes, tempDir: cfg.TempDir, log: slog.Default(),
		now: func() time.Time { return clock().UTC().Truncate(time.Millisecond) },
	}, nil
}

// lockSHA locks the stripes of the given blobs ("" is skipped), in stripe
// order so that two callers never deadlock, and returns the unlock.
func (s *Service) lockSHA(shas ...string) func() {
	var idx []int
	for _, sha := range shas {
		if sha == "" {
			continue
		}
		h := fnv.New32a()
		_, _ = h.Write([]byte(sha))
		i := int(h.Sum32() % uint32(len(s.shaLocks)))
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		s.shaLocks[i].Lock()
	}
	return func() {
		for _, i := range slices.Backward(idx) {
			s.shaLocks[i].Unlock()
		}
	}
}

func errTooLarge(limit int64) error {
	return apperr.New(apperr.KindTooMany, "MEDIA_TOO_LARGE", fmt.Sprintf("the file is larger than the %d-byte limit", limit))
}

func errUnsupported(msg string) error {
	return apperr.Invalid("file", "UNSUPPORTED_MEDIA_TYPE", msg)
}

const unsupportedMsg = "unsupported media type: only PNG, JPEG and WebP images and MP3, WAV and OGG audio are accepted"

// errRangeNotSatisfiable is OUT_OF_RANGE (REST 416). apperr has no kind for it,
// so this one status is built here, with the ErrorInfo grpcx would attach.
func errRangeNotSatisfiable(offset, size int64) error {
	st := status.New(codes.OutOfRange, fmt.Sprintf("offset %d is at or past the end (%d bytes)", offset, size))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: "RANGE_NOT_SATISFIABLE", Domain: grpcx.ErrorDomain,
		Metadata: map[string]string{"size": strconv.FormatInt(size, 10)}}); err == nil {
		st = d
	}
	return st.Err()
}

// upload is an upload spooled to a temp file.
type upload struct {
	file *os.File
	size int64
	sha  string
	ct   string
}

// Upload stores a new media item from a client stream: metadata, then chunks.
// The bytes are spooled to a temp file while hashed, never held whole; the cap
// and the type are enforced while they stream in, and a refused upload stores
// nothing.
func (s *Service) Upload(stream mediav1.MediaService_UploadServer) error {
	ctx := stream.Context()
	caller, err := auth.Require(ctx)
	if err != nil {
		return err
	}
	if caller.UserID == "" {
		return apperr.Unauthenticated(auth.ReasonTokenMissing, "sign in first")
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return apperr.Invalid("metadata", "METADATA_REQUIRED", "the first message must carry the metadata")
	}
	if err != nil {
		return err
	}
	md := first.GetMetadata()
	if md == nil {
		return apperr.Invalid("metadata", "METADATA_REQUIRED", "the first message must carry the metadata")
	}
	purpose := purposeFromProto(md.GetPurpose())
	if purpose == "" {
		return apperr.Invalid("metadata.purpose", "PURPOSE_REQUIRED", "purpose is required")
	}
	if err := CheckUploader(purpose, caller.Role); err != nil {
		return err
	}
	vis := visibilityFromProto(md.GetVisibility())
	if vis == "" {
		vis = DefaultVisibility(purpose)
	}

	up, err := s.spool(stream)
	if up != nil && up.file != nil {
		defer func() {
			_ = up.file.Close()
			_ = os.Remove(up.file.Name())
		}()
	}
	if err != nil {
		return err
	}
	if err := CheckPurposeType(purpose, up.ct); err != nil {
		return err
	}
	meta, thumb, thumbType, err := process(io.NewSectionReader(up.file, 0, up.size), up.ct)
	if err != nil {
		return err
	}
	now := s.now()
	it := Item{
		ID: uuid.Must(uuid.NewV7()).String(), OwnerID: caller.UserID, Filename: md.GetFilename(), SHA256: up.sha,
		ContentType: up.ct, Size: up.size, Purpose: purpose, Visibility: vis, Width: meta.Width, Height: meta.Height,
		DurationMS: meta.DurationMS, CreatedAt: now, ProcessedAt: &now,
	}
	if thumb != nil {
		sum := sha256.Sum256(thumb)
		it.ThumbSHA256, it.ThumbSize, it.ThumbType = hex.EncodeToString(sum[:]), int64(len(thumb)), thumbType
	}
	resp, err := s.store1(ctx, it, up, thumb, idempotency.RequestKey(ctx, md.GetIdempotencyKey()))
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// spool receives the chunks into a temp file, hashing them, enforcing the cap
// and sniffing the type from the first bytes. On error the returned upload (if
// any) still holds the temp file for the caller to remove.
func (s *Service) spool(stream mediav1.MediaService_UploadServer) (*upload, error) {
	f, err := os.CreateTemp(s.tempDir, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("media: spool: %w", err)
	}
	up := &upload{file: f}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var head []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return up, err
		}
		if m.GetMetadata() != nil {
			return up, apperr.Invalid("metadata", "METADATA_TWICE", "only the first message carries the metadata")
		}
		chunk := m.GetChunk()
		up.size += int64(len(chunk))
		if up.size > s.max {
			return up, errTooLarge(s.max)
		}
		if up.ct == "" {
			head = append(head, chunk[:min(len(chunk), SniffLen-len(head))]...)
			if len(head) >= SniffLen {
				if up.ct = Sniff(head); up.ct == "" {
					return up, errUnsupported(unsupportedMsg)
				}
			}
		}
		if _, err := w.Write(chunk); err != nil {
			return up, fmt.Errorf("media: spool: %w", err)
		}
	}
	if up.size == 0 {
		return up, apperr.Invalid("file", "MEDIA_EMPTY", "the file is empty")
	}
	if up.ct == "" {
		if up.ct = Sniff(head); up.ct == "" {
			return up, errUnsupported(unsupportedMsg)
		}
	}
	up.sha = hex.EncodeToString(h.Sum(nil))
	return up, nil
}

// process extracts the metadata of the content in r and, for an image, makes
// its thumbnail (nil when the image is too large to decode). An image that does
// not decode is refused as unsupported.
func process(r *io.SectionReader, ct string) (Metadata, []byte, string, error) {
	var m Metadata
	switch {
	case IsImage(ct):
		w, h, err := ImageConfig(r)
		if err != nil {
			return m, nil, "", errUnsupported("the file is not a readable " + ct + " image")
		}
		m.Width, m.Height = w, h
		if int64(w)*int64(h) > maxDecodePixels {
			return m, nil, "", nil
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			return m, nil, "", err
		}
		thumb, tt, err := Thumbnail(r, ct)
		if err != nil {
			return m, nil, "", errUnsupported("the file is not a readable " + ct + " image")
		}
		return m, thumb, tt, nil
	case ct == TypeWAV:
		if d, err := WAVDuration(r, r.Size()); err == nil {
			m.DurationMS = d.Milliseconds()
		}
	}
	return m, nil, "", nil
}

// store1 stores the blob and the thumbnail (unless present: the bytes are
// stored once per content) and records the item with its events, under the
// locks of both blobs. An idempotent retry returns the first response; a blob
// that ends up unreferenced is removed again.
func (s *Service) store1(ctx context.Context, it Item, up *upload, thumb []byte, key string) (*mediav1.UploadResponse, error) {
	unlock := s.lockSHA(it.SHA256, it.ThumbSHA256)
	defer unlock()
	if err := s.putIfAbsent(ctx, it.SHA256, io.NewSectionReader(up.file, 0, up.size), up.size); err != nil {
		return nil, err
	}
	if thumb != nil {
		if err := s.putIfAbsent(ctx, it.ThumbSHA256, bytes.NewReader(thumb), int64(len(thumb))); err != nil {
			return nil, err
		}
	}
	resp, err := idempotency.Do(ctx, s.db, "media.Upload", it.OwnerID, key,
		func() *mediav1.UploadResponse { return &mediav1.UploadResponse{} },
		func(ctx context.Context, tx *db.Tx) (*mediav1.UploadResponse, error) {
			if err := s.store.InsertItem(ctx, tx, it); err != nil {
				return nil, err
			}
			for _, build := range []func(Item) (kafka.Message, error){uploadedEvent, processedEvent} {
				msg, err := build(it)
				if err != nil {
					return nil, err
				}
				if err := outbox.Write(ctx, tx, msg); err != nil {
					return nil, err
				}
			}
			return &mediav1.UploadResponse{Media: toProto(it)}, nil
		})
	if err != nil || resp.GetMedia().GetId() != it.ID {
		// Nothing of ours was recorded: drop what we stored if nothing else uses it.
		s.collectLocked(ctx, it.SHA256)
		if thumb != nil {
			s.collectLocked(ctx, it.ThumbSHA256)
		}
	}
	return resp, err
}

func (s *Service) putIfAbsent(ctx context.Context, key string, r io.Reader, size int64) error {
	ok, err := s.blobs.Exists(ctx, key)
	if err != nil {
		return fmt.Errorf("media: blob exists: %w", err)
	}
	if ok {
		return nil
	}
	return s.blobs.Put(ctx, key, r, size)
}

// collectLocked deletes blob sha if no item names it; the caller holds its lock.
func (s *Service) collectLocked(ctx context.Context, sha string) {
	n, err := s.store.References(ctx, s.db, sha)
	if err != nil {
		s.log.Warn("media: count blob references", "sha256", sha, "err", err)
		return
	}
	if n > 0 {
		return
	}
	if err := s.blobs.Delete(ctx, sha); err != nil {
		s.log.Warn("media: delete blob", "sha256", sha, "err", err)
	}
}

// afterCommit starts a sweep when a consumer's transaction marked blobs; it is
// a DB.AfterCommit hook and never blocks.
func (s *Service) afterCommit() {
	if s.gcPending.CompareAndSwap(true, false) {
		go s.sweep(context.Background())
	}
}

// sweep deletes the marked blobs that no item names any more and forgets the
// marks. One sweep runs at a time.
func (s *Service) sweep(ctx context.Context) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	for {
		shas, err := s.store.GCCandidates(ctx, s.db, 100)
		if err != nil {
			s.log.Warn("media: blob sweep", "err", err)
			return
		}
		if len(shas) == 0 {
			return
		}
		for _, sha := range shas {
			unlock := s.lockSHA(sha)
			s.collectLocked(ctx, sha)
			err := s.store.UnmarkGC(ctx, s.db, sha)
			unlock()
			if err != nil {
				s.log.Warn("media: blob sweep", "err", err)
				return
			}
		}
	}
}

// caller returns the caller's claims; ok is false for an anonymous call.
func caller(ctx context.Context) (auth.Claims, bool) {
	c, ok := auth.FromContext(ctx)
	return c, ok && c.UserID != ""
}

// readable returns the item if the caller may read it; another user's private
// item is not found.
func (s *Service) readable(ctx context.Context, id string) (Item, error) {
	it, err := s.store.ItemByID(ctx, s.db, id)
	if err != nil {
		return Item{}, err
	}
	c, ok := caller(ctx)
	if !it.CanRead(c, ok) {
		return Item{}, errItemNotFound(id)
	}
	return it, nil
}

// GetMedia returns an item's metadata.
func (s *Service) GetMedia(ctx context.Context, req *mediav1.GetMediaRequest) (*mediav1.GetMediaResponse, error) {
	it, err := s.readable(ctx, req.GetMediaId())
	if err != nil {
		return nil, err
	}
	return &mediav1.GetMediaResponse{Media: toProto(it)}, nil
}

// ListMyMedia returns a page of the caller's items, newest first.
func (s *Service) ListMyMedia(ctx context.Context, req *mediav1.ListMyMediaRequest) (*mediav1.ListMyMediaResponse, error) {
	uid, err := auth.RequireUser(ctx)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	cur, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	var after int64
	if cur.ID != "" {
		if after, err = strconv.ParseInt(cur.Key, 10, 64); err != nil {
			return nil, apperr.Invalid("page_token", "PAGE_TOKEN_INVALID", "page_token is not a token this API returned")
		}
	}
	items, err := s.store.ListByOwner(ctx, s.db, uid, purposeFromProto(req.GetPurpose()), after, cur.ID, size)
	if err != nil {
		return nil, err
	}
	out := &mediav1.ListMyMediaResponse{}
	for _, it := range items {
		out.Media = append(out.Media, toProto(it))
	}
	out.NextPageToken = page.Next(items, size, func(it Item) page.Cursor {
		return page.Cursor{Key: strconv.FormatInt(it.CreatedAt.UnixMilli(), 10), ID: it.ID}
	})
	return out, nil
}

// DeleteMedia deletes one of the caller's items (admins: any), publishes
// MediaDeleted and deletes the bytes once no item names them.
func (s *Service) DeleteMedia(ctx context.Context, req *mediav1.DeleteMediaRequest) (*mediav1.DeleteMediaResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		it, err := s.store.ItemByID(ctx, tx, req.GetMediaId())
		if err != nil {
			return err
		}
		reason := mediav1.MediaDeletionReason_MEDIA_DELETION_REASON_OWNER
		switch {
		case it.OwnerID == c.UserID:
		case c.Role == auth.RoleAdmin:
			reason = mediav1.MediaDeletionReason_MEDIA_DELETION_REASON_ADMIN
		case !it.CanRead(c, true):
			return errItemNotFound(it.ID)
		default:
			return apperr.Forbidden("NOT_MEDIA_OWNER", "only its owner or an admin may delete a media item")
		}
		return s.deleteItem(ctx, tx, it, reason)
	})
	if err != nil {
		return nil, err
	}
	s.sweep(ctx)
	return &mediav1.DeleteMediaResponse{}, nil
}

// ReadContent streams an item's bytes (or its thumbnail's), whole or a range:
// a first message with the type, size, sha256 and the range served and no
// data, then chunks of at most 64 KiB.
func (s *Service) ReadContent(req *mediav1.ReadContentRequest, stream mediav1.MediaService_ReadContentServer) error {
	ctx := stream.Context()
	it, err := s.readable(ctx, req.GetMediaId())
	if err != nil {
		return err
	}
	key, ct, size := it.SHA256, it.ContentType, it.Size
	if req.GetThumbnail() {
		if !it.HasThumbnail() {
			return apperr.NotFound("THUMBNAIL_NOT_FOUND", fmt.Sprintf("media %s has no thumbnail", it.ID))
		}
		key, ct, size = it.ThumbSHA256, it.ThumbType, it.ThumbSize
	}
	offset, length, err := ClampRange(size, req.GetOffset(), req.GetLength())
	if err != nil {
		return err
	}
	rc, err := s.blobs.Open(ctx, key, offset, length)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("media: blob %s of %s is missing: %w", key, it.ID, err)
	}
	if err != nil {
		return fmt.Errorf("media: open blob: %w", err)
	}
	defer rc.Close()
	if err := stream.Send(&mediav1.ReadContentResponse{ContentType: ct, SizeBytes: size, Sha256: key, Offset: offset, Length: length}); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	var sent int64
	for sent < length {
		n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), length-sent)])
		if n > 0 {
			if serr := stream.Send(&mediav1.ReadContentResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
			sent += int64(n)
		}
		if err != nil {
			if sent < length {
				return fmt.Errorf("media: read blob %s: %d of %d bytes: %w", key, sent, length, err)
			}
			break
		}
	}
	return nil
}

func toProto(it Item) *mediav1.Media {
	p := &mediav1.Media{
		Id: it.ID, OwnerId: it.OwnerID, Filename: it.Filename, Sha256: it.SHA256, ContentType: it.ContentType,
		SizeBytes: it.Size, Purpose: purposeToProto(it.Purpose), Visibility: visibilityToProto(it.Visibility),
		Width: int32(it.Width), Height: int32(it.Height), DurationMs: it.DurationMS, HasThumbnail: it.HasThumbnail(),
		CreatedAt: timestamppb.New(it.CreatedAt),
	}
	if it.ProcessedAt != nil {
		p.ProcessedAt = timestamppb.New(*it.ProcessedAt)
	}
	return p
}

func purposeFromProto(p mediav1.MediaPurpose) Purpose {
	switch p {
	case mediav1.MediaPurpose_MEDIA_PURPOSE_AVATAR:
		return PurposeAvatar
	case mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_AUDIO:
		return PurposeLessonAudio
	case mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_IMAGE:
		return PurposeLessonImage
	case mediav1.MediaPurpose_MEDIA_PURPOSE_OTHER:
		return PurposeOther
	}
	return ""
}

func purposeToProto(p Purpose) mediav1.MediaPurpose {
	switch p {
	case PurposeAvatar:
		return mediav1.MediaPurpose_MEDIA_PURPOSE_AVATAR
	case PurposeLessonAudio:
		return mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_AUDIO
	case PurposeLessonImage:
		return mediav1.MediaPurpose_MEDIA_PURPOSE_LESSON_IMAGE
	case PurposeOther:
		return mediav1.MediaPurpose_MEDIA_PURPOSE_OTHER
	}
	return mediav1.MediaPurpose_MEDIA_PURPOSE_UNSPECIFIED
}

func visibilityFromProto(v mediav1.MediaVisibility) Visibility {
	switch v {
	case mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC:
		return Public
	case mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE:
		return Private
	}
	return ""
}

func visibilityToProto(v Visibility) mediav1.MediaVisibility {
	switch v {
	case Public:
		return mediav1.MediaVisibility_MEDIA_VISIBILITY_PUBLIC
	case Private:
		return mediav1.MediaVisibility_MEDIA_VISIBILITY_PRIVATE
	}
	return mediav1.MediaVisibility_MEDIA_VISIBILITY_UNSPECIFIED
}

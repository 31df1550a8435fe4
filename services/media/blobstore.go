package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// BlobStore holds the bytes of media items and of their thumbnails, by key: the
// bytes' sha256 (lowercase hex, 64 characters). Blobs
// are immutable: a key always names the same bytes, so putting an existing key
// again is harmless. Implementations must be safe for concurrent use.
//
// Two implementations exist: [LocalStore] (files under the data directory, the
// default) and [S3Store] (objects in a bucket of an S3-compatible server such
// as MinIO: PutObject, ranged GetObject, RemoveObject, StatObject). Both pass
// the same contract suite (blobstore_contract_test.go).
type BlobStore interface {
	// Put stores size bytes read from r under key, atomically: a reader never
	// sees a partial blob.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Open reads length bytes from offset (length <= 0: to the end). A missing
	// key is an error satisfying errors.Is(err, fs.ErrNotExist).
	Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Exists reports whether key is stored.
	Exists(ctx context.Context, key string) (bool, error)
}

// LocalStore keeps blobs on local disk at <Root>/<first two hex digits>/<key>,
// written to <Root>/tmp first and renamed into place.
type LocalStore struct {
	Root string
}

// NewLocalStore creates root (and its tmp directory) if needed.
func NewLocalStore(root string) (*LocalStore, error) {
	if root == "" {
		return nil, errors.New("media: local store needs a root directory")
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("media: create store %s: %w", root, err)
	}
	return &LocalStore{Root: root}, nil
}

var keyPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *LocalStore) path(key string) (string, error) {
	if !keyPattern.MatchString(key) {
		return "", fmt.Errorf("media: invalid blob key %q", key)
	}
	return filepath.Join(s.Root, key[:2], key), nil
}

// TempDir is where uploads are spooled before they are stored: on the same
// file system as the blobs.
func (s *LocalStore) TempDir() string { return filepath.Join(s.Root, "tmp") }

// Put implements [BlobStore].
func (s *LocalStore) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return fmt.Errorf("media: store dir: %w", err)
	}
	f, err := os.CreateTemp(s.TempDir(), "put-*")
	if err != nil {
		return fmt.Errorf("media: temp blob: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("media: write blob: %w", err)
	}
	if n != size {
		return fmt.Errorf("media: blob %s: wrote %d bytes, want %d", key, n, size)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("media: sync blob: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("media: close blob: %w", err)
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("media: rename blob: %w", err)
	}
	return nil
}

// Open implements [BlobStore].
func (s *LocalStore) Open(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	if length <= 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Delete implements [BlobStore].
func (s *LocalStore) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("media: delete blob: %w", err)
	}
	return nil
}

// Exists implements [BlobStore].
func (s *LocalStore) Exists(_ context.Context, key string) (bool, error) {
	p, err := s.path(key)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

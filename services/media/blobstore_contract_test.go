package media

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testBlobStore is the [BlobStore] contract: every implementation runs it
// (TestLocalStoreContract, TestS3StoreContract). open returns an empty store
// owned by the test.
func testBlobStore(t *testing.T, open func(t *testing.T) BlobStore) {
	ctx := context.Background()
	hello := []byte("hello world")
	helloKey := blobKey(hello)

	mustPut := func(t *testing.T, s BlobStore, key string, data []byte) {
		t.Helper()
		if err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	read := func(t *testing.T, s BlobStore, key string, offset, length int64) []byte {
		t.Helper()
		rc, err := s.Open(ctx, key, offset, length)
		if err != nil {
			t.Fatalf("open %s at %d+%d: %v", key, offset, length, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s at %d+%d: %v", key, offset, length, err)
		}
		return b
	}

	t.Run("put and open whole", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, helloKey, hello)
		if got := read(t, s, helloKey, 0, 0); !bytes.Equal(got, hello) {
			t.Fatalf("read %q", got)
		}
		if ok, err := s.Exists(ctx, helloKey); !ok || err != nil {
			t.Fatalf("exists: %v %v", ok, err)
		}
	})

	t.Run("ranges", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, helloKey, hello)
		for _, tc := range []struct {
			name           string
			offset, length int64
			want           string
		}{
			{"offset only", 6, 0, "world"},
			{"offset and length", 6, 3, "wor"},
			{"length from the start", 0, 5, "hello"},
			{"one byte", 10, 1, "d"},
			{"length past the end", 6, 100, "world"},
			{"negative length means to the end", 4, -1, "o world"},
			{"offset at the end", 11, 0, ""},
		} {
			if got := read(t, s, helloKey, tc.offset, tc.length); string(got) != tc.want {
				t.Errorf("%s: read %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("missing key", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for _, r := range [][2]int64{{0, 0}, {3, 0}, {2, 5}, {100, 0}} {
			rc, err := s.Open(ctx, helloKey, r[0], r[1])
			if !errors.Is(err, fs.ErrNotExist) {
				if rc != nil {
					_ = rc.Close()
				}
				t.Fatalf("open missing key at %v: %v, want fs.ErrNotExist", r, err)
			}
		}
		if ok, err := s.Exists(ctx, helloKey); ok || err != nil {
			t.Fatalf("exists: %v %v", ok, err)
		}
	})

	t.Run("invalid keys refused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for _, key := range []string{
			"", "../../etc/passwd", "abc", strings.ToUpper(helloKey), helloKey + "0", helloKey[:63] + "/",
			"../" + helloKey[3:], helloKey[:62] + "..",
		} {
			if err := s.Put(ctx, key, bytes.NewReader(hello), int64(len(hello))); err == nil || !strings.Contains(err.Error(), "invalid blob key") {
				t.Errorf("put %q: %v", key, err)
			}
			if _, err := s.Open(ctx, key, 0, 0); err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("open %q: %v", key, err)
			}
			if err := s.Delete(ctx, key); err == nil {
				t.Errorf("delete %q accepted", key)
			}
			if _, err := s.Exists(ctx, key); err == nil {
				t.Errorf("exists %q accepted", key)
			}
		}
	})

	t.Run("delete twice", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, helloKey, hello)
		for i := range 2 {
			if err := s.Delete(ctx, helloKey); err != nil {
				t.Fatalf("delete %d: %v", i+1, err)
			}
		}
		if ok, err := s.Exists(ctx, helloKey); ok || err != nil {
			t.Fatalf("exists after delete: %v %v", ok, err)
		}
		if _, err := s.Open(ctx, helloKey, 0, 0); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("open after delete: %v", err)
		}
		if err := s.Delete(ctx, blobKey([]byte("never stored"))); err != nil {
			t.Fatalf("delete of a key never stored: %v", err)
		}
	})

	t.Run("put twice", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustPut(t, s, helloKey, hello)
		mustPut(t, s, helloKey, hello)
		if got := read(t, s, helloKey, 0, 0); !bytes.Equal(got, hello) {
			t.Fatalf("read %q", got)
		}
	})

	t.Run("short reader refused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Put(ctx, helloKey, bytes.NewReader(hello[:5]), int64(len(hello))); err == nil {
			t.Fatal("a reader shorter than size was accepted")
		}
		if ok, err := s.Exists(ctx, helloKey); ok || err != nil {
			t.Fatalf("a failed put left a blob: %v %v", ok, err)
		}
	})

	t.Run("concurrent puts of one key", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := randomBytes(t, 256<<10)
		key := blobKey(data)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() { errs[i] = s.Put(ctx, key, bytes.NewReader(data), int64(len(data))) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, key, 0, 0); !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes after concurrent puts, corrupted", len(got))
		}
	})

	t.Run("3 MiB blob", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		data := randomBytes(t, 3<<20+7)
		key := blobKey(data)
		mustPut(t, s, key, data)
		if got := read(t, s, key, 0, 0); blobKey(got) != key {
			t.Fatalf("read %d bytes of %d, corrupted", len(got), len(data))
		}
		off := int64(1<<20 + 3)
		if got := read(t, s, key, off, 64<<10); !bytes.Equal(got, data[off:off+64<<10]) {
			t.Fatal("range of a large blob corrupted")
		}
		if got := read(t, s, key, 3<<20, 0); !bytes.Equal(got, data[3<<20:]) {
			t.Fatalf("tail %x", got)
		}
	})
}

func TestLocalStoreContract(t *testing.T) {
	t.Parallel()
	testBlobStore(t, func(t *testing.T) BlobStore {
		ls, err := NewLocalStore(filepath.Join(t.TempDir(), "media"))
		if err != nil {
			t.Fatal(err)
		}
		return ls
	})
}

package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/puchi-dev/puchi/platform/config"
)

// DefaultS3Region is the region used when [S3Config.Region] is empty (MinIO's
// default, and what most S3-compatible servers accept).
const DefaultS3Region = "us-east-1"

// s3PartSize is the part size of a multipart upload: blobs up to this size go
// in one PUT streamed from the reader (the default 10 MiB upload cap fits),
// larger ones in parts of this size, one at a time. Parts stream straight from
// an io.ReaderAt (the service's spooled uploads are io.SectionReaders); from
// any other reader minio-go buffers one part. Memory stays bounded by one part
// whatever the blob's size.
const s3PartSize = 16 << 20

// s3MaxRetries bounds minio-go's retries of a failed request (it defaults to
// 10, with backoff): a down server is reported within a second or two.
const s3MaxRetries = 3

// S3Config locates an S3-compatible bucket (MinIO, AWS S3, ...). The
// variables in parentheses are the ones internal/system reads it from.
type S3Config struct {
	// Endpoint is the server's host:port, without a scheme
	// (PUCHI_MEDIA_S3_ENDPOINT).
	Endpoint string
	// Bucket holds the blobs; it is created when missing
	// (PUCHI_MEDIA_S3_BUCKET).
	Bucket string
	// AccessKey and SecretKey are the credentials (PUCHI_MEDIA_S3_ACCESS_KEY,
	// PUCHI_MEDIA_S3_SECRET_KEY); the secret is never printed or logged.
	AccessKey string
	SecretKey config.Secret
	// Region is the bucket's region (PUCHI_MEDIA_S3_REGION); "" means
	// [DefaultS3Region].
	Region string
	// TLS selects https instead of http (PUCHI_MEDIA_S3_TLS).
	TLS bool
	// Prefix, when set, is put before every key: "media" or "media/" both
	// store blob k as "media/k" (PUCHI_MEDIA_S3_PREFIX). Optional; lets
	// several deployments share one bucket.
	Prefix string

	// partSize overrides s3PartSize (tests exercise multipart uploads);
	// transport overrides minio-go's HTTP transport (tests trust a test CA).
	partSize  uint64
	transport http.RoundTripper
}

// URL is the endpoint with its scheme, as error messages show it.
func (c S3Config) URL() string {
	if c.TLS {
		return "https://" + c.Endpoint
	}
	return "http://" + c.Endpoint
}

// Validate checks the configuration without contacting the server; errors
// name the variable (and field) to fix.
func (c S3Config) Validate() error {
	var errs []error
	switch {
	case strings.TrimSpace(c.Endpoint) == "":
		errs = append(errs, errors.New("PUCHI_MEDIA_S3_ENDPOINT (S3Config.Endpoint): required for the S3 media store: host:port of the S3 server"))
	case strings.Contains(c.Endpoint, "://") || strings.Contains(c.Endpoint, "/"):
		errs = append(errs, fmt.Errorf("PUCHI_MEDIA_S3_ENDPOINT (S3Config.Endpoint): %q is not host:port (no scheme or path; PUCHI_MEDIA_S3_TLS selects https)", c.Endpoint))
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("PUCHI_MEDIA_S3_BUCKET (S3Config.Bucket): %q: %w", c.Bucket, err))
	}
	if c.AccessKey == "" {
		errs = append(errs, errors.New("PUCHI_MEDIA_S3_ACCESS_KEY (S3Config.AccessKey): required for the S3 media store"))
	}
	if c.SecretKey == "" {
		errs = append(errs, errors.New("PUCHI_MEDIA_S3_SECRET_KEY (S3Config.SecretKey): required for the S3 media store"))
	}
	return errors.Join(errs...)
}

// S3Store keeps blobs as objects <Prefix><key> of one bucket of an
// S3-compatible server. It is safe for concurrent use (the minio-go client
// is). Every call is bounded by its context.
type S3Store struct {
	client *minio.Client
	bucket string
	prefix string
	url    string
	part   uint64
}

// NewS3Store validates cfg, connects, creates the bucket if it is missing
// (safe when several processes start at once) and so checks that the server
// is reachable and the credentials work: a process with a broken store fails
// at start-up rather than at its first upload. ctx bounds the checks.
func NewS3Store(ctx context.Context, cfg S3Config) (*S3Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("media: S3 store: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultS3Region
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, string(cfg.SecretKey), ""),
		Secure:     cfg.TLS,
		Region:     cfg.Region,
		MaxRetries: s3MaxRetries,
		Transport:  cfg.transport,
	})
	if err != nil {
		return nil, fmt.Errorf("media: S3 store at %s: %w", cfg.URL(), err)
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	s := &S3Store{client: client, bucket: cfg.Bucket, prefix: prefix, url: cfg.URL(), part: cfg.partSize}
	if s.part == 0 {
		s.part = s3PartSize
	}
	if err := s.ensureBucket(ctx, cfg.Region); err != nil {
		return nil, fmt.Errorf("media: S3 store at %s: %w", s.url, err)
	}
	return s, nil
}

// ensureBucket creates the bucket unless it exists. Two processes may both
// find it missing: the loser's "already owned by you" (or any error after
// which the bucket turns out to exist) is success.
func (s *S3Store) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	if err == nil || minio.ToErrorResponse(err).Code == minio.BucketAlreadyOwnedByYou {
		return nil
	}
	if ok, existsErr := s.client.BucketExists(ctx, s.bucket); existsErr == nil && ok {
		return nil
	}
	return fmt.Errorf("create bucket %s: %w", s.bucket, err)
}

// object is the name of key's object in the bucket (the prefix, then key),
// or an error when key is not a blob key.
func (s *S3Store) object(key string) (string, error) {
	if !keyPattern.MatchString(key) {
		return "", fmt.Errorf("media: invalid blob key %q", key)
	}
	return s.prefix + key, nil
}

// errNotExist wraps a missing-object error so that it satisfies
// errors.Is(err, fs.ErrNotExist) and still reads as what the server said.
type errNotExist struct{ err error }

func (e errNotExist) Error() string   { return e.err.Error() }
func (e errNotExist) Unwrap() []error { return []error{fs.ErrNotExist, e.err} }

func isNoSuchKey(err error) bool { return minio.ToErrorResponse(err).Code == minio.NoSuchKey }

// wrap names the operation and the server in err.
func (s *S3Store) wrap(op string, err error) error {
	return fmt.Errorf("media: S3 %s at %s: %w", op, s.url, err)
}

// Put implements [BlobStore]. The bytes stream from r to the server with the
// known size, never held whole (one PUT, or 16 MiB parts for larger blobs: see
// s3PartSize); an object becomes visible only once complete. r must hold at
// least size bytes; a shorter r fails the upload and stores nothing.
func (s *S3Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("media: blob %s: negative size %d", key, size)
	}
	_, err = s.client.PutObject(ctx, s.bucket, name, r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.part,
		NumThreads:  1, // parts are read from r one at a time, not buffered ahead
	})
	if err != nil {
		return s.wrap("put "+name, err)
	}
	return nil
}

// Open implements [BlobStore] with a ranged GET. The request is made here, so
// a missing key (or an unreachable server) is reported by Open, not by the
// first Read; the body then streams as it is read. An offset at or past the
// end reads nothing, as with [LocalStore].
func (s *S3Store) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	name, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("media: blob %s: negative offset %d", key, offset)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err = opts.SetRange(offset, offset+length-1)
	case offset > 0:
		err = opts.SetRange(offset, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("media: blob %s: %w", key, err)
	}
	body, _, _, err := minio.Core{Client: s.client}.GetObject(ctx, s.bucket, name, opts)
	switch {
	case err == nil:
		return body, nil
	case isNoSuchKey(err):
		return nil, errNotExist{s.wrap("get "+name, err)}
	case minio.ToErrorResponse(err).Code == minio.InvalidRange:
		// The range starts at or past the end: whether the object exists decides.
		if ok, serr := s.Exists(ctx, key); serr != nil || !ok {
			if serr == nil {
				return nil, errNotExist{s.wrap("get "+name, err)}
			}
			return nil, serr
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	return nil, s.wrap("get "+name, err)
}

// Delete implements [BlobStore]; a missing key is not an error.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	name, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
		return s.wrap("delete "+name, err)
	}
	return nil
}

// Exists implements [BlobStore] with a HEAD request: a missing key is false
// and no error; any other failure is returned.
func (s *S3Store) Exists(ctx context.Context, key string) (bool, error) {
	name, err := s.object(key)
	if err != nil {
		return false, err
	}
	_, err = s.client.StatObject(ctx, s.bucket, name, minio.StatObjectOptions{})
	switch {
	case err == nil:
		return true, nil
	case isNoSuchKey(err):
		return false, nil
	}
	return false, s.wrap("stat "+name, err)
}

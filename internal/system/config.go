package system

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/config"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/services/media"
)

// Config is the process configuration, read from the environment by
// platform/config. `puchi help` prints this table.
type Config struct {
	DataDir     string        `env:"PUCHI_DATA_DIR" default:"./data" help:"where SQLite files, the embedded broker's log and the JWT key live"`
	Brokers     string        `env:"KAFKA_BROKERS" help:"Kafka bootstrap servers; empty: 'puchi run' starts the embedded broker, other commands use PUCHI_BROKER_ADDR"`
	BrokerAddr  string        `env:"PUCHI_BROKER_ADDR" default:"127.0.0.1:9092" help:"listen address of the embedded broker"`
	Partitions  int           `env:"KAFKA_PARTITIONS" default:"3" help:"partitions of each provisioned topic"`
	Replication int           `env:"KAFKA_REPLICATION_FACTOR" default:"1" help:"replication factor of provisioned topics"`
	Retention   time.Duration `env:"KAFKA_RETENTION" default:"720h" help:"retention.ms set on every topic (30 days)"`
	TopicRet    string        `env:"KAFKA_TOPIC_RETENTION" help:"per-topic retention overrides: topic=duration,..."`
	Linger      time.Duration `env:"KAFKA_LINGER" default:"1ms" help:"producer linger.ms: how long the producer waits to batch records (0: send at once; more: bigger batches, more latency)"`

	// Kafka client security (platform/kafka/security.go), for every client.
	KafkaSASLMechanism string        `env:"KAFKA_SASL_MECHANISM" help:"SASL authentication to Kafka: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (PLAIN only with KAFKA_TLS); the embedded broker then requires it with these credentials (SCRAM only); empty: none"`
	KafkaSASLUsername  string        `env:"KAFKA_SASL_USERNAME" help:"SASL user (required with KAFKA_SASL_MECHANISM)"`
	KafkaSASLPassword  config.Secret `env:"KAFKA_SASL_PASSWORD" help:"SASL password (required with KAFKA_SASL_MECHANISM; never logged)"`
	KafkaTLS           bool          `env:"KAFKA_TLS" default:"false" help:"TLS to the Kafka brokers (security.protocol SSL, or SASL_SSL with SASL); not with the embedded broker, which serves no TLS"`
	KafkaTLSCA         string        `env:"KAFKA_TLS_CA" help:"CA bundle (PEM) of the Kafka broker certificates; empty: system roots (needs KAFKA_TLS)"`
	KafkaTLSCert       string        `env:"KAFKA_TLS_CERT" help:"client certificate (PEM) for mutual TLS to Kafka, with KAFKA_TLS_KEY (needs KAFKA_TLS)"`
	KafkaTLSKey        string        `env:"KAFKA_TLS_KEY" help:"private key (PEM) of KAFKA_TLS_CERT"`
	KafkaTLSInsecure   bool          `env:"KAFKA_TLS_INSECURE_SKIP_VERIFY" default:"false" help:"DANGER: do not verify the Kafka broker certificate (throwaway test clusters only)"`
	DatabaseURL        string        `env:"PUCHI_DATABASE_URL" help:"PostgreSQL URL (one schema per service); empty: SQLite files under PUCHI_DATA_DIR"`

	GatewayAddr   string  `env:"PUCHI_GATEWAY_ADDR" default:":8000" help:"REST gateway listen address"`
	RateLimit     float64 `env:"PUCHI_GATEWAY_RATE_LIMIT" default:"50" help:"REST requests per second per client IP (0 disables)"`
	RateBurst     int     `env:"PUCHI_GATEWAY_RATE_BURST" default:"100" help:"REST burst per client IP"`
	AuthRateLimit float64 `env:"PUCHI_GATEWAY_AUTH_RATE_LIMIT" default:"5" help:"sign-in/registration requests (/v1/auth/*) per second per client IP (0 disables)"`
	AuthRateBurst int     `env:"PUCHI_GATEWAY_AUTH_RATE_BURST" default:"20" help:"/v1/auth/* burst per client IP"`
	MaxBodyBytes  int64   `env:"PUCHI_GATEWAY_MAX_BODY_BYTES" default:"1048576" help:"largest accepted REST request body"`

	JWTKeyFile  string        `env:"PUCHI_JWT_KEY_FILE" help:"Ed25519 private key (PEM); default PUCHI_DATA_DIR/keys/jwt-ed25519.pem, created on first run"`
	JWTIssuer   string        `env:"PUCHI_JWT_ISSUER" default:"puchi-user" help:"iss of access tokens"`
	JWTAudience string        `env:"PUCHI_JWT_AUDIENCE" default:"puchi" help:"aud of access tokens"`
	AccessTTL   time.Duration `env:"PUCHI_ACCESS_TOKEN_TTL" default:"15m" help:"access token lifetime"`
	RefreshTTL  time.Duration `env:"PUCHI_REFRESH_TOKEN_TTL" default:"720h" help:"refresh token lifetime"`

	DemoContent bool     `env:"PUCHI_DEMO_CONTENT" default:"true" help:"load the built-in demo course when no course exists yet (needs lesson and quiz in this process)"`
	AdminEmails []string `env:"PUCHI_ADMIN_EMAILS" help:"comma-separated emails that get the admin role when they register"`

	// Mesh resilience and mutual TLS (mesh.go, tls.go).
	TLS               string        `env:"PUCHI_TLS" default:"on" help:"mutual TLS between services and from the gateway: on or off (plaintext, only when explicitly set)"`
	TLSDir            string        `env:"PUCHI_TLS_DIR" help:"dev CA and per-service certificates, created on first run; default PUCHI_DATA_DIR/tls (ignored when PUCHI_TLS_CA is set)"`
	TLSCA             string        `env:"PUCHI_TLS_CA" help:"CA bundle (PEM) that signs every service certificate; with PUCHI_TLS_CERT and PUCHI_TLS_KEY replaces the dev CA"`
	TLSCert           string        `env:"PUCHI_TLS_CERT" help:"this process's certificate (PEM): its SANs must name every service the process serves"`
	TLSKey            string        `env:"PUCHI_TLS_KEY" help:"the private key (PEM) of PUCHI_TLS_CERT"`
	GatewayTLSCert    string        `env:"PUCHI_GATEWAY_TLS_CERT" help:"serve REST over HTTPS with this certificate (PEM); empty: plain HTTP"`
	GatewayTLSKey     string        `env:"PUCHI_GATEWAY_TLS_KEY" help:"the private key of PUCHI_GATEWAY_TLS_CERT"`
	GatewayTimeout    time.Duration `env:"PUCHI_GATEWAY_TIMEOUT" default:"10s" help:"deadline of every REST call (a shorter Grpc-Timeout header wins); exceeded: 504"`
	CallTimeout       time.Duration `env:"PUCHI_CALL_TIMEOUT" default:"10s" help:"deadline of a service-to-service call whose context has none"`
	CallTimeouts      string        `env:"PUCHI_CALL_TIMEOUTS" help:"per-method deadlines: Method=duration,... (GetLesson=2s, /puchi.user.v1.UserService/=5s)"`
	RetryAttempts     int           `env:"PUCHI_RETRY_ATTEMPTS" default:"3" help:"attempts of an idempotent call (reads, keyed writes) failing with UNAVAILABLE (1 disables retries)"`
	BreakerFailures   int           `env:"PUCHI_BREAKER_FAILURES" default:"5" help:"consecutive UNAVAILABLE/DEADLINE_EXCEEDED failures that open a service's circuit (negative disables)"`
	BreakerOpen       time.Duration `env:"PUCHI_BREAKER_OPEN" default:"5s" help:"how long an open circuit fails fast before a probe (half-open)"`
	ReconnectMaxDelay time.Duration `env:"PUCHI_RECONNECT_MAX_DELAY" default:"2s" help:"longest wait between reconnection attempts to a lost instance"`
	Replicas          int           `env:"PUCHI_REPLICAS" default:"1" help:"instances of each hosted service in this process ('puchi run --replicas N'); extra ones listen on port+100*(n-1)"`
	Instance          int           `env:"PUCHI_INSTANCE" default:"1" help:"instance number of 'puchi serve' ('--instance N'): ports shift by 100*(N-1)"`

	MediaMaxBytes int64 `env:"PUCHI_MEDIA_MAX_BYTES" default:"10485760" help:"largest accepted media upload (10 MiB)"`

	// Media blob store (services/media): local files, or an S3-compatible bucket.
	MediaStore       string        `env:"PUCHI_MEDIA_STORE" default:"local" help:"where media bytes are kept: local (files under PUCHI_DATA_DIR/media) or s3 (an S3-compatible bucket, e.g. MinIO)"`
	MediaS3Endpoint  string        `env:"PUCHI_MEDIA_S3_ENDPOINT" help:"host:port of the S3 server, no scheme (required with PUCHI_MEDIA_STORE=s3)"`
	MediaS3Bucket    string        `env:"PUCHI_MEDIA_S3_BUCKET" default:"puchi-media" help:"bucket of the media files; created at start if missing"`
	MediaS3AccessKey string        `env:"PUCHI_MEDIA_S3_ACCESS_KEY" help:"S3 access key (required with PUCHI_MEDIA_STORE=s3)"`
	MediaS3SecretKey config.Secret `env:"PUCHI_MEDIA_S3_SECRET_KEY" help:"S3 secret key (required with PUCHI_MEDIA_STORE=s3; never logged)"`
	MediaS3Region    string        `env:"PUCHI_MEDIA_S3_REGION" default:"us-east-1" help:"region of the bucket"`
	MediaS3TLS       bool          `env:"PUCHI_MEDIA_S3_TLS" default:"false" help:"https to the S3 server (its certificate verified against the system roots)"`
	MediaS3Prefix    string        `env:"PUCHI_MEDIA_S3_PREFIX" help:"folder of the media objects in the bucket (media: media/<sha256>); empty: the bucket's root"`

	// runtime is set by Build once the broker is known (see Specs).
	runtime *runtimeDeps

	LogLevel     slog.Level `env:"PUCHI_LOG_LEVEL" default:"info" help:"debug, info, warn or error"`
	LogFormat    string     `env:"PUCHI_LOG_FORMAT" default:"json" help:"json or text"`
	OTLPEndpoint string     `env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"OTLP/gRPC endpoint for traces; empty: traces stay in process"`
}

// Validate checks what the types cannot, naming the variable.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("PUCHI_DATA_DIR: must not be empty"))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("PUCHI_LOG_FORMAT: %q is not json or text", c.LogFormat))
	}
	if c.AccessTTL <= 0 || c.RefreshTTL <= c.AccessTTL {
		errs = append(errs, errors.New("PUCHI_REFRESH_TOKEN_TTL: must be longer than PUCHI_ACCESS_TOKEN_TTL (both positive)"))
	}
	if c.RateLimit < 0 {
		errs = append(errs, errors.New("PUCHI_GATEWAY_RATE_LIMIT: must not be negative"))
	}
	if c.AuthRateLimit < 0 {
		errs = append(errs, errors.New("PUCHI_GATEWAY_AUTH_RATE_LIMIT: must not be negative"))
	}
	if _, err := c.topicRetention(); err != nil {
		errs = append(errs, err)
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("KAFKA_LINGER: %s is not between 0 and 1s", c.Linger))
	}
	errs = append(errs, c.validateMesh())
	errs = append(errs, c.validateMedia())
	return errors.Join(errs...)
}

// KeyFile is the JWT key path, defaulted under the data folder.
func (c *Config) KeyFile() string {
	if c.JWTKeyFile != "" {
		return c.JWTKeyFile
	}
	return filepath.Join(c.DataDir, "keys", "jwt-ed25519.pem")
}

// validateMedia checks the media blob store choice and, for s3, its settings.
func (c *Config) validateMedia() error {
	switch c.MediaStore {
	case "local":
		return nil
	case "s3":
		return c.MediaS3().Validate()
	}
	return fmt.Errorf("PUCHI_MEDIA_STORE: %q is not local or s3", c.MediaStore)
}

// MediaS3 is the S3 media store's configuration (PUCHI_MEDIA_S3_*), used when
// PUCHI_MEDIA_STORE is s3.
func (c *Config) MediaS3() media.S3Config {
	return media.S3Config{
		Endpoint: c.MediaS3Endpoint, Bucket: c.MediaS3Bucket, AccessKey: c.MediaS3AccessKey, SecretKey: c.MediaS3SecretKey,
		Region: c.MediaS3Region, TLS: c.MediaS3TLS, Prefix: c.MediaS3Prefix,
	}
}

func (c *Config) topicRetention() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if strings.TrimSpace(c.TopicRet) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(c.TopicRet, ",") {
		topic, d, ok := strings.Cut(strings.TrimSpace(kv), "=")
		dur, err := time.ParseDuration(d)
		if !ok || topic == "" || err != nil || dur <= 0 {
			return nil, fmt.Errorf("KAFKA_TOPIC_RETENTION: %q is not topic=duration (e.g. user-events=168h)", kv)
		}
		out[topic] = dur
	}
	return out, nil
}

// Kafka is the client configuration for brokers.
func (c *Config) Kafka(brokers string) kafka.Config {
	tr, _ := c.topicRetention()
	linger := c.Linger
	if linger == 0 {
		linger = -1 // kafka.Config: zero means its default, negative none
	}
	return kafka.Config{
		Brokers: brokers, ClientID: "puchi", Partitions: c.Partitions, ReplicationFactor: c.Replication,
		Retention: c.Retention, TopicRetention: tr, Linger: linger,
		SASLMechanism: c.KafkaSASLMechanism, SASLUsername: c.KafkaSASLUsername, SASLPassword: c.KafkaSASLPassword,
		TLS: c.KafkaTLS, TLSCAFile: c.KafkaTLSCA, TLSCertFile: c.KafkaTLSCert, TLSKeyFile: c.KafkaTLSKey,
		TLSInsecureSkipVerify: c.KafkaTLSInsecure,
	}.WithDefaults()
}

// EmbeddedBroker is the configuration of the embedded broker (`puchi run` without
// KAFKA_BROKERS, `puchi broker`), listening on PUCHI_BROKER_ADDR with its log
// under PUCHI_DATA_DIR. With KAFKA_SASL_MECHANISM set it requires SASL of every
// client and its one user is KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD — the
// credentials this process's own clients present. The broker serves no TLS, so
// KAFKA_TLS and the PLAIN mechanism (which needs TLS) are refused; every error
// names its variables.
func (c *Config) EmbeddedBroker() (broker.Config, error) {
	bc := broker.Config{Addr: c.BrokerAddr, DataDir: filepath.Join(c.DataDir, "kafka"), Retention: c.Retention}
	mech := strings.ToUpper(strings.TrimSpace(c.KafkaSASLMechanism))
	var errs []error
	if c.KafkaTLS {
		errs = append(errs, errors.New("KAFKA_TLS: the embedded broker does not serve TLS; unset KAFKA_TLS and KAFKA_TLS_*, or set KAFKA_BROKERS to a cluster that serves TLS"))
	}
	if mech == kafka.SASLPlain {
		errs = append(errs, errors.New("KAFKA_SASL_MECHANISM: PLAIN sends the password in clear text and the embedded broker has no TLS; use SCRAM-SHA-256 or SCRAM-SHA-512 (or set KAFKA_BROKERS to a cluster that serves TLS)"))
	}
	if len(errs) == 0 {
		// Mechanism, user and password: the clients' rules, the clients' messages.
		errs = append(errs, c.Kafka(bc.Addr).ValidateSecurity())
	}
	if err := errors.Join(errs...); err != nil {
		return broker.Config{}, err
	}
	if mech != "" {
		bc.SASLMechanism, bc.SASLUser, bc.SASLPassword = mech, c.KafkaSASLUsername, c.KafkaSASLPassword
	}
	return bc, nil
}

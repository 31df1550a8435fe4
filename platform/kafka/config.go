package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/config"
)

// Defaults applied by [Config.WithDefaults] to zero-valued fields.
const (
	DefaultPartitions        = 3
	DefaultReplicationFactor = 1
	DefaultRetention         = 30 * 24 * time.Hour
	DefaultLinger            = time.Millisecond
	DefaultClientID          = "puchi"
)

// Config is the client-side Kafka configuration shared by the producer, the
// consumers and topic provisioning. Each field names the environment variable the
// config package reads it from; [Config.Validate] reports errors by that name.
type Config struct {
	// Brokers is the comma-separated bootstrap server list (KAFKA_BROKERS).
	Brokers string
	// ClientID identifies this process in broker logs and metrics (KAFKA_CLIENT_ID).
	// Default [DefaultClientID].
	ClientID string
	// Partitions is the partition count of topics created by [EnsureTopics]
	// (KAFKA_PARTITIONS). Default [DefaultPartitions].
	Partitions int
	// ReplicationFactor of topics created by [EnsureTopics]
	// (KAFKA_REPLICATION_FACTOR). Default [DefaultReplicationFactor].
	ReplicationFactor int
	// Retention is the retention.ms every provisioned topic carries explicitly
	// (KAFKA_RETENTION). Default [DefaultRetention].
	Retention time.Duration
	// TopicRetention overrides Retention per topic name, dead-letter topics
	// included (KAFKA_TOPIC_RETENTION, "topic=duration,...").
	TopicRetention map[string]time.Duration
	// Linger is the producer's linger.ms batching delay (KAFKA_LINGER). Zero means
	// [DefaultLinger]; a negative value disables lingering.
	Linger time.Duration

	// SASLMechanism turns on SASL authentication: PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512 (KAFKA_SASL_MECHANISM). Empty: no authentication. PLAIN is
	// refused without TLS.
	SASLMechanism string
	// SASLUsername is the SASL user (KAFKA_SASL_USERNAME).
	SASLUsername string
	// SASLPassword is the SASL password (KAFKA_SASL_PASSWORD); a [config.Secret], so it
	// is never printed.
	SASLPassword config.Secret
	// TLS encrypts the connections to the brokers (KAFKA_TLS); the broker
	// certificate is verified against TLSCAFile or the system roots.
	TLS bool
	// TLSCAFile is the CA bundle (PEM) that signs the broker certificates
	// (KAFKA_TLS_CA). Empty: the system roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the client certificate and its private key
	// (PEM) for mutual TLS (KAFKA_TLS_CERT, KAFKA_TLS_KEY); both or neither.
	TLSCertFile string
	TLSKeyFile  string
	// TLSInsecureSkipVerify disables verification of the broker certificate
	// (KAFKA_TLS_INSECURE_SKIP_VERIFY): anyone on the path can impersonate the
	// broker. For throwaway test clusters only.
	TLSInsecureSkipVerify bool
}

// WithDefaults returns a copy of c with every zero-valued field set to its default.
func (c Config) WithDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	return c
}

// Validate reports every invalid field of c (after defaults are applied), each
// error naming the environment variable the value comes from.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if strings.TrimSpace(c.Brokers) == "" {
		errs = append(errs, errors.New("KAFKA_BROKERS: must list at least one host:port"))
	}
	for b := range strings.SplitSeq(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" && !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("KAFKA_BROKERS: %q is not host:port", b))
		}
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("KAFKA_PARTITIONS: must be >= 1, got %d", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("KAFKA_REPLICATION_FACTOR: must be >= 1, got %d", c.ReplicationFactor))
	}
	if c.Retention < time.Millisecond {
		errs = append(errs, fmt.Errorf("KAFKA_RETENTION: must be positive, got %s", c.Retention))
	}
	for t, d := range c.TopicRetention {
		if t == "" || d < time.Millisecond {
			errs = append(errs, fmt.Errorf("KAFKA_TOPIC_RETENTION: %q=%s: needs a topic and a positive duration", t, d))
		}
	}
	if err := c.ValidateSecurity(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// RetentionFor returns the retention that topic gets: its TopicRetention override
// or the default Retention.
func (c Config) RetentionFor(topic string) time.Duration {
	c = c.WithDefaults()
	if d, ok := c.TopicRetention[topic]; ok && d > 0 {
		return d
	}
	return c.Retention
}

// commonConfig is the librdkafka configuration shared by every client kind.
func (c Config) commonConfig() ck.ConfigMap {
	c = c.WithDefaults()
	m := ck.ConfigMap{
		"bootstrap.servers":   c.Brokers,
		"client.id":           c.ClientID,
		"enable.metrics.push": false,
	}
	for k, v := range c.SecurityConfig() {
		m[k] = v
	}
	return m
}

// producerConfig is the librdkafka configuration of an idempotent producer.
func (c Config) producerConfig() *ck.ConfigMap {
	c = c.WithDefaults()
	m := c.commonConfig()
	linger := c.Linger
	if linger < 0 {
		linger = 0
	}
	m["enable.idempotence"] = true
	m["acks"] = "all"
	m["linger.ms"] = strconv.FormatFloat(float64(linger)/float64(time.Millisecond), 'f', -1, 64)
	m["partitioner"] = "murmur2_random"
	m["go.delivery.reports"] = true
	m["go.logs.channel.enable"] = false
	return &m
}

// consumerConfig is the librdkafka configuration of a group consumer: offsets are
// stored explicitly after handling and committed by the background auto-commit
// (plus a synchronous commit on shutdown).
func (c Config) consumerConfig(group string) *ck.ConfigMap {
	m := c.commonConfig()
	m["group.id"] = group
	m["group.protocol"] = "classic"
	m["partition.assignment.strategy"] = "cooperative-sticky"
	m["enable.auto.commit"] = true
	m["auto.commit.interval.ms"] = 1000
	m["enable.auto.offset.store"] = false
	m["auto.offset.reset"] = "earliest"
	m["fetch.queue.backoff.ms"] = 20
	m["enable.partition.eof"] = false
	// A member that dies without leaving (kill -9, a crashed container) holds its
	// partitions until its session expires: 10 s instead of librdkafka's 45 s, so
	// a restarted service catches up quickly. Heartbeats stay at a third of it.
	m["session.timeout.ms"] = 10000
	m["heartbeat.interval.ms"] = 3000
	return &m
}

// adminConfig is the librdkafka configuration of an admin client.
func (c Config) adminConfig() *ck.ConfigMap {
	m := c.commonConfig()
	return &m
}
